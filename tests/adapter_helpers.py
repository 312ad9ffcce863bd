"""Build a training output folder without training: LoRA on a real base with random lora_B.

A fresh LoRA adapter has lora_B = 0 and changes nothing; drawing lora_B at random gives an
adapter that really moves the model. lora_A is peft's own init drawn from a generator seeded with
`init_seed` (and the global generator put back after), so an adapter is the same in a test run
alone and in the whole suite (it used to hold whatever the tests before drew). It is saved in the
layout train.py writes (peft adapter, processor, training_config.json naming the base), so merge,
export and evaluate see a real one."""

from __future__ import annotations

import json
from pathlib import Path


def make_adapter(folder, base: str = "bundled:tiny.en", seed: int = 0, scale: float = 0.01, rank: int = 4,
                 init_seed: int = 0) -> Path:
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        return _make_adapter(Path(folder), base, seed, scale, rank)


def _make_adapter(folder: Path, base: str, seed: int, scale: float, rank: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from whisper_lora.models import load_model

    model, processor = load_model(base)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules=["q_proj", "v_proj", "fc1"])
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "training_config.json").write_text(json.dumps({"base_model": base}), encoding="utf-8")
    return folder
