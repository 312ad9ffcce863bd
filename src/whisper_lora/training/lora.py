"""The LoRA adapters: which of Whisper's linear layers get them, and the model wrapped with them (peft)."""

from __future__ import annotations

from .choices import ADALORA_INTERVAL, ADALORA_PHASES
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


def add_lora(model, options: TrainOptions, total_steps: int | None = None):
    """The base model, frozen, with trainable LoRA adapters on the chosen layers. total_steps:
    the optimizer steps the run will take, which AdaLoRA's rank schedule is laid out over."""
    from peft import get_peft_model

    from ..models import quiet_peft_warnings

    quiet_peft_warnings()
    model = get_peft_model(model, lora_config(options, total_steps))
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


def lora_config(options: TrainOptions, total_steps: int | None = None):
    """peft's config for the adapters: LoRA (with rsLoRA or DoRA), or AdaLoRA, which needs the
    run's length to lay out its rank schedule."""
    from peft import AdaLoraConfig, LoraConfig

    common = dict(lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout, bias="none",
                  target_modules=lora_target_regex(options.lora_target_modules, options.adapted_stacks))
    if not options.use_adalora:
        return LoraConfig(r=options.lora_r, use_rslora=options.use_rslora, use_dora=options.use_dora, **common)
    if not total_steps or total_steps < 1:
        raise ValueError("AdaLoRA needs the run's number of optimizer steps")
    held_first, held_last = (int(share * total_steps) for share in ADALORA_PHASES)
    # The ranks are fixed (and saved as the adapter's rank_pattern) at step total - held_last,
    # so that step must come: at least one held last step, and the first phase ends before it.
    held_last = max(held_last, 1) if total_steps > 1 else 0
    held_first = min(held_first, max(total_steps - held_last - 1, 0))
    return AdaLoraConfig(init_r=options.lora_r, target_r=options.resolved_adalora_target_r, total_step=total_steps,
                         tinit=held_first, tfinal=held_last, deltaT=ADALORA_INTERVAL, **common)
