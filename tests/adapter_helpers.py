"""Build a training output folder without training: LoRA on a real base with random lora_B.

A fresh LoRA adapter has lora_B = 0 and changes nothing; drawing lora_B at random gives an
adapter that really moves the model. Both lora_A and lora_B come from the seed (peft draws lora_A
from the global generator, which holds whatever the tests before drew), so an adapter is the
same in a test run alone and in the whole suite. It is saved in the layout train.py writes (peft
adapter, processor, training_config.json naming the base), so merge, export and evaluate see a
real one."""

from __future__ import annotations

import json
from pathlib import Path


def make_adapter(folder, base: str = "bundled:tiny.en", seed: int = 0, scale: float = 0.01, rank: int = 4) -> Path:
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
            if "lora_A" in name:  # peft's own init: kaiming-uniform, a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))
                bound = param.shape[1] ** -0.5
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * bound)
            elif "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    folder = Path(folder)
    peft_model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "training_config.json").write_text(json.dumps({"base_model": base}), encoding="utf-8")
    return folder
