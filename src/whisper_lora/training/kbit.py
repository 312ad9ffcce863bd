"""--load_in_8bit / --load_in_4bit: the frozen base model held in 8 or 4 bits (bitsandbytes), with
LoRA adapters trained on top of it in full precision: QLoRA's recipe for models too large for a GPU.

4-bit follows the QLoRA paper: NF4 weights (a 4-bit type spaced for normally distributed values),
double quantization (the per-block scales are themselves quantized: ~0.4 bit a weight saved) and
matrix products computed in bf16, or fp16 where the GPU has no bf16 (before Ampere); fp32 would
only make them slower, since the weights hold 4 bits of precision anyway. 8-bit is LLM.int8(). Only
the linear layers are quantized: the convolutions, embeddings, layer norms and the tied output
projection stay as they are, and peft's prepare_model_for_kbit_training casts those to fp32 so
their small values survive mixed precision.

bitsandbytes runs on CUDA GPUs: `check_kbit` says so, before any model or data is read, when the
machine has none or the package is missing (`pip install 'whisper-lora[kbit]'`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

from ..errors import OptionsError
from .options import TrainOptions

log = logging.getLogger(__name__)

INSTALL = "pip install 'whisper-lora[kbit]'"
# transformers 5 refuses older bitsandbytes for either type (BITSANDBYTES_MIN_VERSION).
MIN_VERSION = (0, 46, 1)


def kbit_flag(options: TrainOptions) -> str | None:
    """The flag that asked for a quantized base, or None."""
    if options.load_in_8bit:
        return "--load_in_8bit"
    if options.load_in_4bit:
        return "--load_in_4bit"
    return None


def _installed_version() -> tuple[int, ...] | None:
    try:
        text = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit())


def check_kbit(options: TrainOptions, cuda: bool) -> None:
    """OptionsError naming the flag when bitsandbytes cannot run here: no CUDA GPU, the package
    missing or too old. Reads no file; train() calls it before loading anything."""
    flag = kbit_flag(options)
    if flag is None:
        return
    version = _installed_version()
    if not cuda:
        missing = f"; bitsandbytes is not installed either ({INSTALL})" if version is None else ""
        raise OptionsError(f"{flag}: bitsandbytes' quantized layers need a CUDA GPU and none is visible here{missing}. "
                           f"Leave {flag} out to train in full precision, or run on a machine with an NVIDIA GPU")
    if version is None:
        raise OptionsError(f"{flag}: bitsandbytes is not installed: {INSTALL} (it needs a CUDA GPU)")
    if version < MIN_VERSION:
        raise OptionsError(f"{flag}: bitsandbytes {'.'.join(map(str, version))} is too old, "
                           f"{'.'.join(map(str, MIN_VERSION))} or newer is needed: {INSTALL}")


def kbit_precision(options: TrainOptions, bf16_supported: bool) -> str:
    """'bf16' or 'fp16': the compute type of the quantized layers, and the run's mixed precision.
    --bf16 or --fp16 decide when given; else bf16 where the GPU has it (Ampere and newer)."""
    if options.bf16:
        return "bf16"
    if options.fp16:
        return "fp16"
    return "bf16" if bf16_supported else "fp16"


def quantization_config(options: TrainOptions, precision: str):
    """transformers' BitsAndBytesConfig for the flag given."""
    import torch
    from transformers import BitsAndBytesConfig

    if options.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def device_map() -> dict:
    """The whole model on this process's GPU (under torchrun, LOCAL_RANK's): bitsandbytes
    quantizes while loading, on the device the weights go to, and a quantized model cannot be moved."""
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def prepare_for_kbit(model, options: TrainOptions):
    """peft's preparation before the LoRA wrap: base weights frozen, the unquantized ones in fp32.
    Its gradient checkpointing is left off: the Trainer turns it on with --gradient_checkpointing,
    non-reentrant (trainer._checkpointing_args), as on any other run; peft's own would be the
    reentrant kind, whose input hook reaches only the decoder's embeddings."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if not options.gradient_checkpointing:
        log.info("%s: add --gradient_checkpointing to save most of the activations' memory too", kbit_flag(options))
    return model
