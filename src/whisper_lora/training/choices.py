"""The fixed tables fine-tuning's options are checked against: the choices of the flags (tasks,
LoRA modules, schedulers), Whisper's own limits (decoder positions, encoder window) and the
measured defaults (LoRA modules, AdaLoRA's schedule, the timestamp share).

Kept apart from TrainOptions (options.py) because they are data, not checks: the CLI lists them
in its help, lora.py and labels.py read them, and each has its reason beside it. options.py
imports them back, so `from whisper_lora.training.options import LORA_MODULES` keeps working.
"""

from __future__ import annotations

from ..audio import CHUNK_LENGTH

TASKS = ("transcribe", "translate")
# Linear layers LoRA can adapt, by their names in transformers' Whisper: attention projections
# (self-attention in both stacks, cross-attention in the decoder) and the feed-forward pair.
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
# Measured on bundled tiny.en adapting to an espeak-ng voice (benchmarks/train_defaults.py):
# every projection in both stacks learns the voice fastest; see the report for the figures.
DEFAULT_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
DECODER_POSITIONS = 448  # Whisper's decoder context: labels can never be longer
MAX_SECONDS = float(CHUNK_LENGTH)  # Whisper's encoder window; longer clips cannot be trained on whole
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")

# AdaLoRA's three phases, as shares of all optimizer steps: the rank budget is held for the
# first ADALORA_PHASES[0] (the adapters learn before their importance is judged), held again
# for the last ADALORA_PHASES[1] (the chosen ranks train to the end), and cut in between.
ADALORA_PHASES = (0.1, 0.3)
ADALORA_INTERVAL = 10  # steps between two reallocations of the rank budget

# Share of targets with timestamp tokens when --timestamps is not given: enough that the
# model keeps writing timestamps after fine-tuning (measured: see the report / tests).
DEFAULT_TIMESTAMP_SHARE = 0.3

__all__ = ["TASKS", "LORA_MODULES", "DEFAULT_LORA_MODULES", "DECODER_POSITIONS", "MAX_SECONDS", "LR_SCHEDULERS",
           "ADALORA_PHASES", "ADALORA_INTERVAL", "DEFAULT_TIMESTAMP_SHARE"]
