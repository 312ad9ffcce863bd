"""Where the model runs and in what arithmetic: the device choice and the one bf16 probe.

The CPUs these tools run on differ from machine to machine: an AVX2-only EPYC emulates bf16
(a bf16 matmul at about 1 GFLOP/s against 140 fp32), an EPYC with AVX512-BF16 multiplies bf16
natively. Even there a model decoded wholly in bf16 did not win (39.4x realtime against 42.5x in
fp32, issue 14: the decoder's small per-step products got slower) and it bends Whisper's
timestamps in packed windows, so precision "auto" is fp32 on every CPU; bf16 for the whole model
is only ever asked for, and warned about where it is emulated. The one exception, chosen by the
transformers backend itself: where bf16 is native, its encoder runs under bf16 autocast
(decoding/hf.py, issue 34: 1.7x faster encoder, transcripts within noise of fp32)."""

from __future__ import annotations

from .errors import ModelLoadError


def mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(device: str | None = "auto") -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is absent is an error."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: no CUDA GPU is visible; use --device cpu or auto")
    if device == "mps" and not mps_available():
        raise ModelLoadError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    return device


def cpu_has_native_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). oneDNN's own check
    (torch.ops.mkldnn._is_mkldnn_bf16_supported) also says yes on AVX-512 CPUs that only emulate it."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_auto_precision() -> str:
    """What precision "auto" means on a CPU: fp32 everywhere (see the module docstring); decoding
    then holds the output projection in int8 (int8_head.py)."""
    return "fp32"
