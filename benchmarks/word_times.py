"""Word timestamps against known word boundaries, and against faster-whisper on the same weights.

Single words spoken by espeak-ng are joined, with pauses between them, into windows of 10-20 s:
where every word starts and ends is known. Each window is transcribed with --word_timestamps by
our transformers backend (fp32) and our ct2 backend, and by faster-whisper's own
`transcribe(word_timestamps=True)` on the CTranslate2 export of the same weights; each on the
base model and on a fine-tuned adapter (the quick demo's by default: `make demo QUICK=1`).
Printed per model and decoder: words matched to the truth, mean |start error| and |end error|
against the known boundaries, and mean |start| / |end| difference from faster-whisper's words
where both wrote the same word; "raw DTW" rows leave out words.fit_to_sound (times fitted to the
edges of the sound), to compare the alignment itself with faster-whisper's.

    python benchmarks/word_times.py [--adapter demo_output/model] [--windows 10]
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

WORDS = ("apple river yellow morning window garden music paper silver doctor winter family market coffee purple "
         "number table orange station letter mountain pencil kitchen button rabbit forest summer teacher bottle "
         "monkey dinner camera island basket planet carpet engine ladder pocket").split()


def known_windows(n_windows: int, cache: Path, seed: int = 0):
    """Windows of 8-14 joined single words: (audio, [(word, start, end)])."""
    from whisper_lora.data.joined import join_clips
    from whisper_lora.audio import load_audio
    from whisper_lora.synthetic.tts import synthesize_cached

    rng = random.Random(seed)
    clips = {w: load_audio(synthesize_cached(w, cache, voice="en-us", speed=150)) for w in WORDS}
    out = []
    for _ in range(n_windows):
        chosen = rng.sample(WORDS, rng.randint(8, 14))
        window, = join_clips([(clips[w], w) for w in chosen], gap=rng.uniform(0.3, 0.8))
        out.append((window.audio, list(zip(window.texts, window.starts, window.ends))))
    return out


def _norm(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


def matched(words_a, words_b):
    """Pairs of words (a, b) with the same normalised text, in order (difflib's matching blocks).
    Words are (text, start, end)."""
    a, b = [_norm(w[0]) for w in words_a], [_norm(w[0]) for w in words_b]
    pairs = []
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        pairs += [(words_a[block.a + k], words_b[block.b + k]) for k in range(block.size)]
    return pairs


def ours(spec: str, backend: str, audios) -> list[list[tuple[str, float, float]]]:
    from whisper_lora.transcribe import TranscribeOptions, Transcriber

    options = TranscribeOptions(language="en", word_timestamps=True, backend=backend, precision="fp32",
                                compute_type="float32" if backend == "ct2" else None, pack=False,
                                temperatures=(0.0,))
    results = Transcriber.from_spec(spec, options).transcribe_arrays(audios)
    return [[(w.word, w.start, w.end) for s in r.segments for w in s.words] for r in results]


def faster_whisper(folder: str, audios):
    from faster_whisper import WhisperModel

    model = WhisperModel(folder, device="cpu", compute_type="float32", cpu_threads=2)
    out = []
    for audio in audios:
        segments, _ = model.transcribe(audio, language="en", beam_size=1, temperature=0.0, word_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False)
        out.append([(w.word, w.start, w.end) for s in segments for w in s.words])
    return out


def errors(hyps, refs):
    """(matched words, total reference words, mean |start diff|, mean |end diff|) over all windows."""
    starts, ends, total = [], [], 0
    for hyp, ref in zip(hyps, refs):
        total += len(ref)
        for (_, hs, he), (_, rs, re_) in matched(hyp, ref):
            starts.append(abs(hs - rs))
            ends.append(abs(he - re_))
    if not starts:
        return 0, total, float("nan"), float("nan")
    return len(starts), total, float(np.mean(starts)), float(np.mean(ends))


def export_ct2(spec: str, folder: Path) -> str:
    subprocess.run([sys.executable, "-m", "whisper_lora", "export", "--model_path", spec, "--quantization", "float32",
                    "--output_dir", str(folder), "--overwrite"], check=True, capture_output=True)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default=str(ROOT / "demo_output" / "model"),
                        help="a fine-tuned training output folder (default: the demo's)")
    parser.add_argument("--windows", type=int, default=10)
    args = parser.parse_args()
    from whisper_lora.models import ct2_folder

    tmp = Path(tempfile.mkdtemp(prefix="word-times-"))
    windows = known_windows(args.windows, tmp / "speech")
    audios = [a for a, _ in windows]
    truth = [words for _, words in windows]
    print(f"{len(windows)} windows, {sum(map(len, truth))} words, {sum(map(len, audios)) / 16000:.0f} s of audio")
    models = {"base (bundled:tiny.en)": ("bundled:tiny.en", str(ct2_folder("bundled:tiny.en")))}
    if Path(args.adapter).is_dir():
        models[f"fine-tuned ({args.adapter})"] = (args.adapter, export_ct2(args.adapter, tmp / "adapter-ct2"))
    else:
        print(f"no adapter at {args.adapter}: run `make demo QUICK=1` first, or pass --adapter")
    print("| model | decoder | words matched | start error | end error | vs faster-whisper: start | end |")
    print("|---|---|---|---|---|---|---|")
    for label, (spec, folder) in models.items():
        fw = faster_whisper(folder, audios)
        from whisper_lora.decoding import words

        words.FIT_TO_SOUND = False
        raw = {"whisper-lora hf, raw DTW": ours(spec, "hf", audios), "whisper-lora ct2, raw DTW": ours(folder, "ct2", audios)}
        words.FIT_TO_SOUND = True
        runs = {**raw, "whisper-lora hf": ours(spec, "hf", audios), "whisper-lora ct2": ours(folder, "ct2", audios),
                "faster-whisper": fw}
        for name, hyps in runs.items():
            n, total, start, end = errors(hyps, truth)
            vs = errors(hyps, fw)
            versus = "-" if name == "faster-whisper" else f"{vs[2] * 1000:.0f} ms | {vs[3] * 1000:.0f} ms ({vs[0]} words)"
            print(f"| {label} | {name} | {n}/{total} | {start * 1000:.0f} ms | {end * 1000:.0f} ms | {versus} |",
                  flush=True)


if __name__ == "__main__":
    main()
