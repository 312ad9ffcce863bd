"""Packed decoding hands no file another file's words: packed against --no_pack on mixed clips.

    python benchmarks/packing_attribution.py [--model bundled:tiny.en] [--precisions auto,bf16]
                                             [--voices en-us,en-gb+f3] [--per-voice 40] [--orders 3]

Speaks --per-voice sentences (the shipped English lists) in each espeak-ng voice, adds one-word
clips, silence and faint hiss, then transcribes every file alone (--no_pack) and packed (the
default) in several shuffled orders, through Transcriber.transcribe_files as `whisper-lora
transcribe` does. For each precision it prints: files whose packed text shares more content words
with another file's alone text than with its own (alone text or what was said), silent files
with text, WER packed and alone, and the seconds each took. Function words do not count.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

FUNCTION_WORDS = set("a an the and but or so to of in on at for with from by is are was be it its i you "
                     "he she we they me my your our his her their this that there what".split())
ONE_WORD = ["Seven.", "Hello.", "Yes.", "Stop.", "Thanks.", "Tomorrow."]


def clips(folder: Path, voices: list[str], per_voice: int) -> list[tuple[str, str]]:
    """(path, what is said) of every file; silence and hiss say ''."""
    import soundfile

    from whisper_lora.synthetic.datasets import read_sentences
    from whisper_lora.synthetic.tts import synthesize_cached

    sentences = read_sentences("en", "eval") + read_sentences("en", "train")
    out = []
    for v, voice in enumerate(voices):
        for text in sentences[v * per_voice:(v + 1) * per_voice] + ONE_WORD[v::len(voices)]:
            out.append((str(synthesize_cached(text, folder, voice=voice)), text))
    rng = np.random.default_rng(0)
    for k, seconds in enumerate((0.5, 2.0, 4.0)):
        path = folder / f"silence-{k}.wav"
        soundfile.write(path, np.zeros(int(seconds * 16000), dtype=np.float32), 16000)
        out.append((str(path), ""))
    path = folder / "hiss.wav"
    soundfile.write(path, rng.normal(0, 3e-4, 3 * 16000).astype(np.float32), 16000)  # about -70 dBFS
    out.append((str(path), ""))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled:tiny.en")
    p.add_argument("--precisions", default="auto,bf16")
    p.add_argument("--voices", default="en-us,en-gb+f3")
    p.add_argument("--per-voice", type=int, default=40)
    p.add_argument("--orders", type=int, default=3, help="shuffled orders of the files, packed")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.models import load_model
    from whisper_lora.decoding.packing import words
    from whisper_lora.transcribe import Transcriber, TranscribeOptions

    folder = Path(tempfile.gettempdir()) / "whisper-lora-packing-attribution"
    folder.mkdir(exist_ok=True)
    files = clips(folder, args.voices.split(","), args.per_voice)
    paths = [path for path, _ in files]
    said = [text for _, text in files]
    speech = [i for i, t in enumerate(said) if t]
    model, processor = load_model(args.model)
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"model {args.model}; {len(speech)} speech files ({args.voices}, {len(ONE_WORD)} of one word), "
          f"{len(files) - len(speech)} silent or hiss; {args.orders} shuffled orders packed")

    def content(text):
        return words(text) - FUNCTION_WORDS

    for precision in args.precisions.split(","):
        options = TranscribeOptions(precision=precision, language="en")
        start = time.perf_counter()
        alone = [r.text for r in Transcriber.from_model(model, processor, replace(options, pack=False))
                 .transcribe_files(paths)]
        alone_s = time.perf_counter() - start
        alone_words = [content(t) for t in alone]
        packed_t = Transcriber.from_model(model, processor, options)
        rng = random.Random(0)
        wrong, silent_text, seconds, wers = 0, 0, [], []
        for _ in range(args.orders):
            order = rng.sample(range(len(files)), len(files))
            torch.manual_seed(0)
            start = time.perf_counter()
            texts = dict(zip(order, (r.text for r in packed_t.transcribe_files([paths[i] for i in order]))))
            seconds.append(time.perf_counter() - start)
            for i, text in texts.items():
                got = content(text)
                own = max(len(got & alone_words[i]), len(got & content(said[i])))
                if any(len(got & alone_words[j]) > own for j in speech if j != i and alone_words[j] != alone_words[i]):
                    wrong += 1
                    print(f"  {precision}: {said[i]!r} packed as {text!r} (alone {alone[i]!r})")
                if not said[i] and text:
                    silent_text += 1
            wers.append(error_rates([said[i] for i in speech], [texts[i] for i in speech], "en").wer)
        alone_wer = error_rates([said[i] for i in speech], [alone[i] for i in speech], "en").wer
        print(f"{precision}: files more like another file than themselves: {wrong} of {len(files) * args.orders}; "
              f"silent files with text: {silent_text}; WER packed {np.mean(wers) * 100:.1f}% "
              f"(orders {', '.join(f'{w * 100:.1f}' for w in wers)}), alone {alone_wer * 100:.1f}%; "
              f"seconds packed {np.mean(seconds):.1f} (best {min(seconds):.1f}), alone {alone_s:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
