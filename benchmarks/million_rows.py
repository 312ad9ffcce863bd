"""A million-row JSONL manifest: peak memory and time to validate it, and to the first training step.

    python benchmarks/million_rows.py [--rows 1000000] [--files 50] [--work_dir /tmp/million-rows]

Builds --files short WAV clips and a manifest of --rows rows over them. Rows repeat the clips'
audio through hard links, one path per row (a manifest naming one path twice is a duplicate that
validation drops), so the manifest is a million distinct files to read as far as every path,
stat and check goes, while the disk holds only --files clips. Then, each in a fresh process so
that its peak RSS is its own:
  1. validate (decoding every file once; the lengths are cached by file identity) and again,
     warm, from the cache;
  2. train the tiny random Whisper for one step with 2 data-loader workers decoding the audio,
     timing from the train() call to the end of step 1.
The figures go to stdout and --work_dir/results.json; RESULTS.md keeps the ones recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb  # noqa: E402

TEXTS = ["the quick brown fox jumps over the lazy dog", "please call me back when you get home",
         "the weather is very nice today", "i would like a cup of coffee", "we will meet at the station"]


def build(work: Path, rows: int, files: int) -> Path:
    import soundfile

    manifest = work / "manifest.jsonl"
    if manifest.is_file() and (work / "built.json").is_file() and \
            json.loads((work / "built.json").read_text()) == {"rows": rows, "files": files}:
        return manifest
    rng = np.random.default_rng(0)
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for k in range(files):  # 1-5 s of quiet noise: decoding cost like speech, no TTS needed
        seconds = 1 + 4 * k / max(files - 1, 1)
        soundfile.write(clips / f"{k}.wav", (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32),
                        16000, subtype="PCM_16")
    links = work / "links"
    t = time.perf_counter()
    with open(manifest, "w", encoding="utf-8") as out:
        for i in range(rows):
            folder = links / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i}.wav"
            if not path.exists():
                os.link(clips / f"{i % files}.wav", path)
            out.write(json.dumps({"audio_path": f"links/{i // 1000:04d}/{i}.wav",
                                  "text": TEXTS[i % files % len(TEXTS)]}) + "\n")
    (work / "built.json").write_text(json.dumps({"rows": rows, "files": files}))
    print(f"built {rows} rows over {files} files in {time.perf_counter() - t:.0f} s", flush=True)
    return manifest


def phase_validate(manifest: Path) -> dict:
    from whisper_lora.data.validation import validate_manifest

    t = time.perf_counter()
    report = validate_manifest(manifest)
    return {"seconds": round(time.perf_counter() - t, 1), "rows": report.rows, "good": len(report.good_rows),
            "problems": len(report.problems), "peak_rss_mb": round(peak_rss_mb())}


def phase_train(manifest: Path, work: Path) -> dict:
    from transformers import TrainerCallback

    from whisper_lora.models.testing import tiny_random_model
    from whisper_lora.train import train
    from whisper_lora.training.options import TrainOptions

    model_dir = work / "tiny-random"
    if not (model_dir / "config.json").is_file():
        model, processor = tiny_random_model()
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    marks = {}

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.setdefault("first_step", time.perf_counter())

    options = TrainOptions(model_name_or_path=str(model_dir), train_file=str(manifest),
                           output_dir=str(work / "out"), max_steps=1, per_device_train_batch_size=8,
                           num_workers=2, save_steps=1, overwrite_output_dir=True, warmup_steps=0)
    t = time.perf_counter()
    train(options, callbacks=[FirstStep()])
    return {"seconds_to_first_step": round(marks["first_step"] - t, 1), "peak_rss_mb": round(peak_rss_mb())}


def in_fresh_process(phase: str, args) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--rows", str(args.rows), "--files", str(args.files),
           "--work_dir", str(args.work_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{phase} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/million-rows"))
    p.add_argument("--phase", choices=("validate", "train"))
    args = p.parse_args()
    work = args.work_dir.absolute()
    os.environ["WHISPER_LORA_CACHE"] = str(work / "cache")  # a cold cache of our own, not the user's
    manifest = work / "manifest.jsonl"
    if args.phase == "validate":
        print(json.dumps(phase_validate(manifest)))
        return
    if args.phase == "train":
        print(json.dumps(phase_train(manifest, work)))
        return
    work.mkdir(parents=True, exist_ok=True)
    build(work, args.rows, args.files)
    size = manifest.stat().st_size
    import shutil

    shutil.rmtree(work / "cache", ignore_errors=True)
    results = {"rows": args.rows, "files": args.files, "manifest_mb": round(size / 1e6, 1),
               "validate_cold": in_fresh_process("validate", args), "validate_warm": in_fresh_process("validate", args),
               "train": in_fresh_process("train", args)}
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
