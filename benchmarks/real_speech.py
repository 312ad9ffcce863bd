"""Real speech: bundled:base on Dutch recordings of people, before and after fine-tuning.

    python benchmarks/real_speech.py [--epochs 3] [--variants defaults,reference] [--recipe NAME="FLAGS"]

Data (fetched from Debian's archive once, cached, never committed; whisper_lora.corpora): the
Dutch voice acting of Fish Fillets NG, split by game level (every 5th level held out: 287 test
clips; validation: every 20th clip of the other levels; train: the rest, about 68 min), and five
LibriVox utterances of English read by a person (pocketsphinx-testdata) to see what fine-tuning
on Dutch costs English.

Printed side by side, one row per model: held-out Dutch WER (normalised, and raw), LibriVox
English WER, decoding speed (audio seconds per wall second on the test set, model loading
included, temperature 0), and for trained models: audio seconds trained per wall second, peak
RSS, wall time. Variants:
  before     bundled:base as it is
  defaults   `whisper-lora train` with its defaults (and a validation set)
  reference  the Hugging Face blog recipe (benchmarks/common.py reference_train), same data and epochs
  NAME       any --recipe NAME="extra train flags", e.g. --recipe lr3e-4="--learning_rate 3e-4"
Each training runs in its own process (so its peak RSS is its own), one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, emit, parse_result, peak_rss_mb, reference_train  # noqa: E402

BASE = "bundled:base"
LANGUAGE = "nl"
WORK = ROOT / "demo_output" / "real-speech"


def data(work: Path) -> dict:
    from whisper_lora.corpora import fillets, librivox

    split = fillets.write_split(work / "data")
    english = librivox.write_manifest(work / "data" / "librivox.jsonl")
    return {"train": split.train, "validation": split.validation, "test": split.test, "english": english,
            "counts": split.counts}


def scores(model: str, manifest: Path, language: str) -> dict:
    from whisper_lora.evaluate import EvaluateOptions, evaluate

    result = evaluate(EvaluateOptions(models=(model,), data=str(manifest), language=language)).results[0]
    s = next(iter(result.by_language.values()))
    return {"wer": s.wer, "raw_wer": s.raw_wer, "speed": result.audio_seconds / result.seconds}


def trained_seconds(manifest: Path, epochs: float) -> float:
    from whisper_lora.audio import audio_duration
    from whisper_lora.data.manifest import read_manifest

    return epochs * sum(audio_duration(r.audio_path) for r in read_manifest(manifest))


def child(variant: str, flags: str, work: Path, epochs: float, reference_steps: int = 0) -> None:
    paths = data(work)
    out = work / "runs" / variant
    record = {"variant": variant, "flags": flags}
    if variant == "before":
        model = BASE
    elif variant == "reference":
        start = time.perf_counter()
        r = reference_train(BASE, paths["train"], out, language=LANGUAGE, epochs=epochs,
                            max_steps=reference_steps or None)
        record.update(wall=time.perf_counter() - start, steps=r["steps"], audio_seconds=r["audio_seconds"])
        model = str(out)
    else:
        from whisper_lora.cli import main

        argv = ["train", "--model_name_or_path", BASE, "--train_file", str(paths["train"]),
                "--validation_file", str(paths["validation"]), "--language", LANGUAGE, "--output_dir", str(out),
                "--num_train_epochs", str(epochs), "--overwrite_output_dir", *shlex.split(flags)]
        start = time.perf_counter()
        if main(argv) != 0:
            raise SystemExit(f"training {variant} failed")
        record.update(wall=time.perf_counter() - start, audio_seconds=trained_seconds(paths["train"], epochs))
        model = str(out)
    record["peak_rss_mb"] = peak_rss_mb()
    if variant == "reference" and reference_steps:  # a few steps: throughput only, its WER would mean nothing
        record["test"] = record["english"] = None
    else:
        record["test"] = scores(model, paths["test"], LANGUAGE)
        record["english"] = scores(model, paths["english"], "en")
    emit(record)


def row(r: dict, base_speed: float) -> str:
    t, e = r["test"], r["english"]
    train = (f"{r['audio_seconds'] / r['wall']:7.2f} | {r['peak_rss_mb']:8.0f} | {r['wall'] / 60:7.1f}"
             if "wall" in r else f"{'-':>7} | {'-':>8} | {'-':>7}")
    if t is None:
        return f"| {r['variant']:<14} | {'-':>7} | {'-':>7} | {'-':>7} | {'-':>16} | {train} |  ({r['steps']} steps)"
    return (f"| {r['variant']:<14} | {t['wer'] * 100:6.1f}% | {t['raw_wer'] * 100:6.1f}% | {e['wer'] * 100:6.1f}% "
            f"| {t['speed']:5.1f}x ({t['speed'] / base_speed:4.2f}) | {train} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=float, default=3.0, help="training epochs of every variant (default: 3)")
    p.add_argument("--variants", default="before,defaults,reference",
                   help="comma list of before, defaults, reference and --recipe names (default: %(default)s)")
    p.add_argument("--recipe", action="append", default=[], metavar='NAME="FLAGS"',
                   help="a variant training with these extra `whisper-lora train` flags")
    p.add_argument("--reference_steps", type=int, default=0,
                   help="stop the reference after this many steps (its throughput only: a machine too slow for "
                        "its full run); 0: the same epochs as ours")
    p.add_argument("--work", type=Path, default=WORK, help="data, adapters and results (default: %(default)s)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--flags", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.flags, args.work, args.epochs, args.reference_steps)
        return 0

    recipes = dict(r.split("=", 1) for r in args.recipe)
    paths = data(args.work)  # fetch and split before timing anything
    print(f"data: {paths['counts']} clips; English: 5 LibriVox utterances; base {BASE}, {args.epochs:g} epochs")
    results = []
    for variant in args.variants.split(","):
        flags = recipes.get(variant, "")
        proc = subprocess.run([sys.executable, __file__, "--child", variant, f"--flags={flags}", "--work",
                               str(args.work), "--epochs", str(args.epochs), "--reference_steps",
                               str(args.reference_steps)], capture_output=True, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1"})
        (args.work / f"{variant}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        results.append(parse_result(proc.stdout))
        print(f"  {variant}: done ({json.dumps(results[-1])})", flush=True)
    scored = [r for r in results if r["test"]]
    base_speed = next((r["test"]["speed"] for r in scored if r["variant"] == "before"),
                      scored[0]["test"]["speed"] if scored else 1.0)
    print(f"\n| {'model':<14} | Dutch WER | raw WER | English WER | decoding speed (vs before) | "
          "trained audio-s/s | peak RSS MB | train min |")
    print(f"|{'-' * 16}|---------|---------|---------|------------------|---------|----------|---------|")
    for r in results:
        print(row(r, base_speed))
    for r in results:
        if r.get("flags"):
            print(f"{r['variant']}: {r['flags']}")
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
