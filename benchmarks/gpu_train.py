"""GPU checks: training speed and memory per precision, with and without gradient checkpointing,
the WER each precision reaches after a full run, and inference speed on the GPU.

    python benchmarks/gpu_train.py --data FOLDER [--speed-model MODEL] [--random-init]
                                   [--quality-model MODEL] [--steps 30] [--batch-size 16]
                                   [--parts speed,quality,infer] [--json OUT.json]

FOLDER is a demo data folder (train.json, test.json and optionally long.json; `whisper-lora demo`
writes one). speed: `--steps` optimizer steps of our trainer per variant (fp32/fp16/bf16, gradient
checkpointing off/on); seconds per step is the median over the steps after the first three, memory
is torch.cuda.max_memory_allocated. --random-init builds the speed model from its config with
random weights: step time and memory do not depend on the values of the weights. quality: one
full run per precision with the train command's defaults, then WER on test.json (greedy).
infer: realtime factor of our hf backend on the GPU (device and precision picked automatically)
for the test clips (batched) and the long file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from whisper_lora.evaluate import EvaluateOptions, evaluate
from whisper_lora.data.manifest import read_manifest
from whisper_lora.train import train
from whisper_lora.training.options import TrainOptions

PRECISIONS = ("fp32", "fp16", "bf16")


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, the GPU synchronised so queued kernels are counted."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def run_training(options: TrainOptions) -> tuple[object, StepTimer]:
    timer = StepTimer()  # watches the real trainer's steps; changes nothing else
    return train(options, callbacks=[timer]), timer


def random_copy(model_dir: Path, out: Path) -> Path:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig.from_pretrained(model_dir))
    model.save_pretrained(out)
    for f in model_dir.iterdir():  # tokenizer, processor and the real generation config (token ids)
        if f.suffix == ".json" and f.name != "config.json":
            shutil.copy(f, out / f.name)
    return out


def speed(model: str, data: Path, work: Path, steps: int, batch: int) -> list[dict]:
    rows = []
    for precision in PRECISIONS:
        for checkpointing in (False, True):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            out = work / f"speed-{precision}-{'gc' if checkpointing else 'nogc'}"
            options = TrainOptions(model_name_or_path=model, train_file=str(data / "train.json"), output_dir=str(out),
                                   language="en", max_steps=steps, per_device_train_batch_size=batch,
                                   fp16=precision == "fp16", bf16=precision == "bf16",
                                   gradient_checkpointing=checkpointing, save_steps=10 ** 6, logging_steps=5)
            result, timer = run_training(options)
            gaps = [b - a for a, b in zip(timer.ends, timer.ends[1:])][2:]  # drop the warm-up steps
            row = dict(precision=precision, gradient_checkpointing=checkpointing, steps=result.global_step,
                       batch=batch, s_per_step=statistics.median(gaps),
                       clips_per_s=batch / statistics.median(gaps),
                       peak_gb=torch.cuda.max_memory_allocated() / 2 ** 30,
                       train_loss=result.train_metrics.get("train_loss"))
            print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(out, ignore_errors=True)
    return rows


def wer(spec: str, manifest: Path, batch: int = 16) -> tuple[float, float]:
    """(WER, seconds) of greedy decoding on the GPU."""
    result = evaluate(EvaluateOptions(models=(spec,), data=str(manifest), language="en", batch_size=batch)).results[0]
    return next(iter(result.by_language.values())).wer, result.seconds


def quality(model: str, data: Path, work: Path) -> list[dict]:
    base_wer, _ = wer(model, data / "test.json")
    rows = [dict(precision="base model, no training", wer=base_wer)]
    print(json.dumps(rows[0]), flush=True)
    for precision in PRECISIONS:
        out = work / f"quality-{precision}"
        start = time.perf_counter()
        result, _ = run_training(TrainOptions(model_name_or_path=model, train_file=str(data / "train.json"),
                                              output_dir=str(out), language="en", fp16=precision == "fp16",
                                              bf16=precision == "bf16", save_steps=10 ** 6))
        seconds = time.perf_counter() - start
        after, _ = wer(str(out), data / "test.json")
        row = dict(precision=precision, steps=result.global_step, train_seconds=seconds, wer=after,
                   train_loss=result.train_metrics.get("train_loss"))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def infer(model: str, data: Path) -> list[dict]:
    from whisper_lora.audio import audio_duration
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.transcribe import Transcriber
    from whisper_lora.decoding.options import TranscribeOptions

    rows = []
    for name, manifest, batch in (("short clips", "test.json", 16), ("long file", "long.json", 16)):
        if not (data / manifest).is_file():
            continue
        entries = read_manifest(data / manifest)
        paths = [str(e.audio_path) for e in entries]
        seconds = sum(audio_duration(p) for p in paths)
        transcriber = Transcriber.from_spec(model, TranscribeOptions(language="en", batch_size=batch))
        list(transcriber.transcribe_files(paths[:1]))  # warm-up: kernels, allocator
        torch.cuda.synchronize()
        start = time.perf_counter()
        results = list(transcriber.transcribe_files(paths))
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
        scores = error_rates([e.text for e in entries], [r.text for r in results], "en")
        row = dict(audio=name, files=len(paths), audio_seconds=seconds, wall_seconds=wall,
                   realtime_factor=seconds / wall, wer=scores.wer, device=transcriber.backend.device,
                   precision=transcriber.backend.precision)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--speed-model", default="bundled:base")
    p.add_argument("--random-init", action="store_true", help="random weights for the speed model")
    p.add_argument("--quality-model", default="bundled:tiny.en")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--parts", default="speed,quality,infer")
    p.add_argument("--json", type=Path, help="write every figure here too")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible: this benchmark measures GPU training")
    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 supported: "
          f"{torch.cuda.is_bf16_supported()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-train-"))
    parts, record = args.parts.split(","), {}
    if "speed" in parts:
        model = args.speed_model
        if args.random_init:
            from whisper_lora.models import resolve_hf_folder

            folder = Path(model) if Path(model).is_dir() else Path(resolve_hf_folder(model))  # a config is enough
            model = str(random_copy(folder, work / "random-model"))
        record["speed"] = dict(model=args.speed_model, random_init=args.random_init,
                               rows=speed(model, args.data, work, args.steps, args.batch_size))
    if "quality" in parts:
        record["quality"] = dict(model=args.quality_model, rows=quality(args.quality_model, args.data, work))
    if "infer" in parts:
        record["infer"] = dict(model=args.quality_model, rows=infer(args.quality_model, args.data))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
