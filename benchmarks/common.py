"""Shared pieces of the benchmarks: the machine's matmul peak, peak RSS, the demo data set, WER."""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "demo_output" / "bench-data"


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an n x n matmul (2 n^3 FLOPs) over a few runs: the machine's practical peak."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def dataset(folder: Path = DEFAULT_DATA, n_train: int = 240):
    """The demo's English data set (espeak-ng, a voice tiny.en gets wrong), built once and cached."""
    from whisper_lora.synthetic.datasets import build_dataset

    return build_dataset(folder, language="en", n_train=n_train, long_seconds=600.0)


def emit(record: dict) -> None:
    """Child processes report one JSON line, prefixed so the parent can find it among logs."""
    print("RESULT " + json.dumps(record), flush=True)
    sys.stdout.flush()


def parse_result(stdout: str) -> dict:
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("the benchmark child printed no RESULT line:\n" + stdout[-3000:])


def reference_train(base: str, train_manifest, out, *, language: str | None, batch: int = 8,
                    epochs: float | None = None, max_steps: int | None = None, repeat_to: int | None = None) -> dict:
    """The Hugging Face fine-tuning blog's recipe, plainly, as the peft Whisper example writes it:
    WhisperFeatureExtractor features computed per example up front, a padding collator, peft LoRA
    r=32/alpha=64 on q_proj/v_proj, Seq2SeqTrainer, fp32, lr 1e-3, 10% warm-up, one clip per
    30-s window. repeat_to: cycle the rows up to this many samples. Returns wall time (features
    included), optimizer steps, and the audio seconds trained on."""
    from peft import LoraConfig, get_peft_model
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from whisper_lora import load_model
    from whisper_lora.audio import audio_duration, load_audio
    from whisper_lora.data.manifest import read_manifest

    model, processor = load_model(base)
    if language:  # the blog's WhisperTokenizer(language=..., task="transcribe")
        processor.tokenizer.set_prefix_tokens(language=language, task="transcribe")
    rows = read_manifest(train_manifest)
    if repeat_to:
        rows = (rows * (repeat_to // len(rows) + 1))[:repeat_to]

    def prepare(row):
        samples = load_audio(row.audio_path)
        feats = processor.feature_extractor(samples, sampling_rate=16000).input_features[0]
        return {"input_features": feats, "labels": processor.tokenizer(row.text).input_ids}

    start = time.perf_counter()
    train_set = [prepare(r) for r in rows if audio_duration(r.audio_path) > 0]

    def collate(features):
        inputs = processor.feature_extractor.pad([{"input_features": f["input_features"]} for f in features],
                                                 return_tensors="pt")
        labels = processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        ids = labels["input_ids"].masked_fill(labels.attention_mask.ne(1), -100)
        if (ids[:, 0] == model.config.decoder_start_token_id).all():
            ids = ids[:, 1:]  # the model prepends it again when shifting labels right
        inputs["labels"] = ids
        return inputs

    model.config.forced_decoder_ids = None
    if language:
        model.generation_config.language, model.generation_config.task = language, "transcribe"
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                             lora_dropout=0.05, bias="none"))
    steps = max_steps or int(-(-len(train_set) * (epochs or 1.0) // batch))
    args = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, learning_rate=1e-3, warmup_steps=max(1, steps // 10),
        max_steps=steps, logging_steps=max(1, steps // 4), save_strategy="no", report_to=[],
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0, seed=42)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train_set, data_collator=collate)
    trainer.train()
    wall = time.perf_counter() - start
    model.save_pretrained(out)
    processor.save_pretrained(out)  # so evaluate loads base + adapter from this folder
    seconds = sum(audio_duration(r.audio_path) for r in rows)
    seen = seconds * steps * batch / max(1, len(train_set))
    return {"wall": wall, "steps": steps, "audio_seconds": seen, "model": model, "collate": collate,
            "train_set": train_set}


def bootstrap(a: list[tuple], b: list[tuple], draws: int = 2000) -> tuple[float, float]:
    """95% interval of WER(b) - WER(a) over clips drawn with replacement (paired). a, b: per clip,
    (errors, reference words, ...) of the same clips decoded two ways."""
    rng = random.Random(0)
    k = len(a)
    diffs = []
    for _ in range(draws):
        idx = [rng.randrange(k) for _ in range(k)]
        ea, na = sum(a[i][0] for i in idx), sum(a[i][1] for i in idx)
        eb = sum(b[i][0] for i in idx)
        diffs.append((eb - ea) / max(na, 1))
    diffs.sort()
    return diffs[int(0.025 * draws)], diffs[int(0.975 * draws)]
