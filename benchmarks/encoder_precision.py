"""The encoder in bf16 against fp32 (issue 34): what it buys in time and what it changes in the text.

    python benchmarks/encoder_precision.py [--models bundled:tiny.en,bundled:base] [--short 200]
                                          [--long-seconds 300] [--data FOLDER] [--threads 2]

On a CPU that multiplies bf16 in hardware (AVX512-BF16 or AMX), precision auto runs the hf
backend's encoder under bf16 autocast and keeps the decoder in fp32 with its int8 output head
(decoding/hf.py). This script decodes the same audio both ways, everything else equal (the
defaults: batch 16, packed short files, greedy): the demo data set's short clips (test.json, then
train.json rows; the voice tiny.en gets wrong), its other voice (test_other_voice.json) and the
long file (long.json, cropped at a sentence end). Per set and model: seconds, WER, how many files
differ, and the paired bootstrap 95% interval of WER(bf16) - WER(fp32) over the files (the long
file is one file: no interval).
Where the CPU has no bf16 instructions it says so and stops: bf16 is emulated there and slow.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bootstrap  # noqa: E402
from infer_speed import long_file, manifests  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="bundled:tiny.en,bundled:base")
    p.add_argument("--short", type=int, default=200)
    p.add_argument("--long-seconds", type=float, default=300.0)
    p.add_argument("--data", help="an existing build_dataset folder (default: common.dataset())")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.devices import cpu_has_native_bf16
    from whisper_lora.scoring.metrics import error_rates, utterance_errors
    from whisper_lora.transcribe import Transcriber, TranscribeOptions

    if not cpu_has_native_bf16():
        print("this CPU has no bf16 instructions: precision auto keeps the encoder in fp32 here; nothing to compare")
        return 0
    torch.set_num_threads(args.threads)
    train, test, long_json = manifests(args)
    other_json = test.parent / "test_other_voice.json"
    sets = {"short clips": [(r.audio_path, r.text) for r in read_manifest(test) + read_manifest(train)][:args.short],
            "other voice": [(r.audio_path, r.text) for r in read_manifest(other_json)] if other_json.is_file() else []}
    long_audio, long_ref, note = long_file(long_json, args.long_seconds)
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"{args.threads} threads; greedy, batch 16, packed; short clips {len(sets['short clips'])}, other voice "
          f"{len(sets['other voice'])}, long file {len(long_audio) / 16000:.0f} s {note}".rstrip())
    print("| model | set | fp32 encoder s | bf16 encoder s | speed-up | WER fp32 | WER bf16 | files that differ "
          "| WER bf16 - fp32 (95% CI) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        runs = {}
        for bf16 in (False, True):
            t = Transcriber.from_spec(model, TranscribeOptions(batch_size=16, language="en"))
            t.backend._bf16_encoder = bf16  # the one switch between the two runs
            list(t.transcribe_files([sets["short clips"][0][0]]))  # warm-up
            for name, rows in sets.items():
                if rows:
                    start = time.perf_counter()
                    texts = [r.text for r in t.transcribe_files([path for path, _ in rows])]
                    runs[bf16, name] = (texts, time.perf_counter() - start)
            start = time.perf_counter()
            runs[bf16, "long file"] = ([t.transcribe_array(long_audio).text], time.perf_counter() - start)
        for name, rows in [*sets.items(), ("long file", [(None, long_ref)])]:
            if not rows:
                continue
            refs = [text for _, text in rows]
            (a, ta), (b, tb) = runs[False, name], runs[True, name]
            wa, wb = error_rates(refs, a, "en").wer, error_rates(refs, b, "en").wer
            per_a = [(s.words.errors, s.words.reference_length) for s in (utterance_errors(r, h, "en") for r, h in zip(refs, a))]
            per_b = [(s.words.errors, s.words.reference_length) for s in (utterance_errors(r, h, "en") for r, h in zip(refs, b))]
            interval = ("{:+.1f} .. {:+.1f}".format(*(100 * x for x in bootstrap(per_a, per_b)))
                        if len(rows) > 1 else "(one file)")
            differ = sum(x != y for x, y in zip(a, b))
            print(f"| {model} | {name} | {ta:.1f} | {tb:.1f} | {ta / tb:.2f}x | {wa * 100:.1f}% | {wb * 100:.1f}% "
                  f"| {differ} of {len(rows)} | {interval} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
