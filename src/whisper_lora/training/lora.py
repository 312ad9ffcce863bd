"""The LoRA adapters: which of Whisper's linear layers get them, and the model wrapped with them (peft)."""

from __future__ import annotations

from .options import TrainOptions


def lora_target_regex(modules: tuple[str, ...], stacks: tuple[str, ...] = ("encoder", "decoder")) -> str:
    """A regular expression peft full-matches against module names such as
    model.encoder.layers.0.self_attn.q_proj or model.decoder.layers.3.fc1, in the given stacks."""
    stacks = "|".join(stacks)
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
                        target_modules=lora_target_regex(options.lora_target_modules, options.adapted_stacks),
                        use_rslora=options.use_rslora, use_dora=options.use_dora, bias="none")
    model = get_peft_model(model, config)
    if options.gradient_checkpointing:
        # With every base weight frozen, nothing entering a checkpointed layer needs a gradient:
        # reentrant checkpointing (torch's old default, and what DeepSpeed or peft's k-bit helper
        # may still pick) then drops the adapters' gradients, the encoder's all of them. The
        # Trainer asks for the non-reentrant kind (trainer._checkpointing_args); marking the
        # outputs of both input layers as needing gradients (the encoder's conv1, which
        # transformers 5 takes as the encoder's input embedding, and the decoder's token
        # embedding) makes either kind right, for the cost of one small convolution's backward.
        model.enable_input_require_grads()
    return model
