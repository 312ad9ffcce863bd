"""The LoRA adapters: which of Whisper's linear layers get them, and the model wrapped with them (peft)."""

from __future__ import annotations

from .options import TrainOptions


def lora_target_regex(modules: tuple[str, ...], freeze_encoder: bool) -> str:
    """A regular expression peft full-matches against module names such as
    model.encoder.layers.0.self_attn.q_proj or model.decoder.layers.3.fc1."""
    stacks = "decoder" if freeze_encoder else "encoder|decoder"
    attention = [m for m in modules if m.endswith("_proj")]
    feed_forward = [m for m in modules if m.startswith("fc")]
    parts = []
    if attention:
        parts.append(rf"model\.({stacks})\.layers\.\d+\.(self_attn|encoder_attn)\.({'|'.join(attention)})")
    if feed_forward:
        parts.append(rf"model\.({stacks})\.layers\.\d+\.({'|'.join(feed_forward)})")
    return "|".join(f"(?:{p})" for p in parts)


def add_lora(model, options: TrainOptions):
    """The base model, frozen, with trainable LoRA adapters on the chosen layers."""
    from peft import LoraConfig, get_peft_model

    from ..models import quiet_peft_warnings

    quiet_peft_warnings()
    config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        target_modules=lora_target_regex(options.lora_target_modules, options.freeze_encoder),
                        bias="none")
    return get_peft_model(model, config)
