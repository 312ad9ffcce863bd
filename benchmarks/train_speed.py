"""Training throughput: whisper-lora's trainer (defaults) against a plain reference recipe.

    python benchmarks/train_speed.py [--samples 192] [--batch 8] [--variants ours,ours-unpacked,ours-frozen]

Both train bundled:tiny.en on the same espeak-ng clips, the same number of samples, one after the
other in fresh processes (so each peak RSS is its own). The reference is written here the way the
Hugging Face fine-tuning blog and the peft Whisper example do it: WhisperFeatureExtractor features
computed per example up front, a padding collator, peft LoRA on q_proj/v_proj, Seq2SeqTrainer, fp32.
Printed per variant: audio-seconds trained per wall-second, seconds per step, peak RSS, model FLOPs
per step and MFU against this machine's measured fp32 and bf16 matmul peak, and WER on held-out
sentences after training (so speed is not bought with accuracy). Then the ratio ours / reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset, emit, matmul_peak, parse_result, peak_rss_mb, reference_train  # noqa: E402

BASE = "bundled:tiny.en"
# ours: the train command's defaults (each batch's clips packed into shared windows); ours-unpacked:
# --no_pack_clips, one clip per window; ours-frozen: --freeze_encoder (what the demo runs)
VARIANTS = ("reference", "ours", "ours-unpacked", "ours-frozen")


def step_flops(model, batch) -> float:
    """FLOPs of one forward + backward on `batch`, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def audio_seconds(rows) -> float:
    from whisper_lora.audio import audio_duration

    return sum(audio_duration(r.audio_path) for r in rows)


def run_reference(data, out: Path, samples: int, batch: int) -> dict:
    """The blog recipe, plainly (common.reference_train), on the same samples as ours."""
    r = reference_train(BASE, data.train, out, language=None, batch=batch, max_steps=samples // batch,
                        repeat_to=samples)
    flops = step_flops(r["model"], r["collate"](r["train_set"][:batch]))
    return {"wall": r["wall"], "steps": r["steps"], "audio_seconds": r["audio_seconds"], "flops_per_step": flops}


def run_ours(data, out: Path, samples: int, batch: int, freeze_encoder: bool = False, pack: bool = True) -> dict:
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.train import train
    from whisper_lora.training.options import TrainOptions

    rows = read_manifest(data.train)
    rows = (rows * (samples // len(rows) + 1))[:samples]
    steps = samples // batch
    start = time.perf_counter()
    result = train(TrainOptions(model_name_or_path=BASE, train_file=str(data.train), output_dir=str(out),
                                max_steps=steps, per_device_train_batch_size=batch, logging_steps=max(1, steps // 4),
                                save_steps=10 ** 6, overwrite_output_dir=True, freeze_encoder=freeze_encoder,
                                pack_clips=pack))
    wall = time.perf_counter() - start
    flops = _our_step_flops(out, rows[:batch], pack and not freeze_encoder)
    return {"wall": wall, "steps": result.global_step, "audio_seconds": audio_seconds(rows),
            "flops_per_step": flops}


def _our_step_flops(out: Path, rows, pack: bool) -> float:
    """FLOPs of one step of the trained adapter on a batch of these rows as our trainer builds it
    (packed into shared windows when it packs; a share of the targets timestamped)."""
    from whisper_lora import load_model
    from whisper_lora.tokens import Tokens
    from whisper_lora.training.dataset import Collator, SpeechDataset
    from whisper_lora.training.labels import LabelMaker, timestamped_rows
    from whisper_lora.training.options import DEFAULT_TIMESTAMP_SHARE
    from whisper_lora.training.packing import WindowPacker

    model, processor = load_model(str(out))
    maker = LabelMaker(processor.tokenizer, Tokens.of(model), "transcribe")
    data = SpeechDataset(rows, processor, maker, "en", timestamped_rows(rows, DEFAULT_TIMESTAMP_SHARE, 42),
                         raw=pack)
    packer = WindowPacker(processor.feature_extractor, maker, 448) if pack else None
    batch = Collator(model.config.decoder_start_token_id, packer=packer)([data[i] for i in range(len(rows))])
    for p in model.parameters():
        p.requires_grad_(False)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
    return step_flops(model, {"input_features": batch["input_features"], "labels": batch["labels"]})


def held_out_wer(adapter: Path, manifest: Path) -> float:
    from whisper_lora.evaluate import EvaluateOptions, evaluate

    result = evaluate(EvaluateOptions(models=(str(adapter),), data=str(manifest), language="en")).results[0]
    return next(iter(result.by_language.values())).wer


def child(variant: str, samples: int, batch: int) -> None:
    data = dataset()
    out = Path(tempfile.mkdtemp(prefix=f"train-speed-{variant}-"))
    if variant == "reference":
        record = run_reference(data, out, samples, batch)
    else:
        record = run_ours(data, out, samples, batch, freeze_encoder=variant == "ours-frozen",
                          pack=variant != "ours-unpacked")
    record["peak_rss_mb"] = peak_rss_mb()
    record["wer_after"] = held_out_wer(out, data.test)
    record["variant"] = variant
    emit(record)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=192, help="training clips seen by each variant")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma list of " + ",".join(VARIANTS) + " (the reference always runs, first)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.samples, args.batch)
        return 0

    dataset()  # build (or reuse) before timing anything
    # bf16 at 512: on CPUs without bf16 instructions it runs at ~1 GFLOP/s, and 2048 would take minutes
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16", n=512, repeats=3)}
    print(f"matmul peak (2048^3): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    results = {}
    variants = ["reference"] + [v for v in args.variants.split(",") if v in VARIANTS and v != "reference"]
    for variant in variants:
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--samples", str(args.samples),
                               "--batch", str(args.batch)], capture_output=True, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1"})
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        results[variant] = r = parse_result(proc.stdout)
        step = r["wall"] / r["steps"]
        mfu32 = r["flops_per_step"] / step / (peaks["fp32"] * 1e9)
        mfu16 = r["flops_per_step"] / step / (peaks["bf16"] * 1e9)
        print(f"{variant:>9}: {r['audio_seconds'] / r['wall']:6.2f} audio-s/s  {step:6.2f} s/step  "
              f"peak RSS {r['peak_rss_mb']:6.0f} MB  {r['flops_per_step'] / 1e12:6.2f} TFLOP/step  "
              f"MFU {mfu32 * 100:5.1f}% of fp32 peak, {mfu16 * 100:5.1f}% of bf16 peak  "
              f"held-out WER {r['wer_after'] * 100:5.1f}%")
    ref = results["reference"]
    for name in variants[1:]:
        print(f"throughput ratio {name}/reference: {ref['wall'] / results[name]['wall']:.2f}x "
              f"({args.samples} samples, batch {args.batch}, {BASE})")
    print(json.dumps({"peaks_gflops": peaks, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
