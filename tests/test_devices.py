"""Device and precision choice: the same defaults on every CPU, whatever bf16 it has."""

from __future__ import annotations

import logging

import pytest

from whisper_lora import devices
from whisper_lora.decoding import options as transcribe_options
from whisper_lora.errors import ModelLoadError
from whisper_lora.transcribe import TranscribeOptions


@pytest.mark.parametrize("native_bf16", [False, True])
def test_auto_is_fp32_on_every_cpu_and_bf16_only_when_asked(monkeypatch, caplog, native_bf16):
    monkeypatch.setattr(transcribe_options, "cpu_has_native_bf16", lambda: native_bf16)
    assert TranscribeOptions().resolved_precision("cpu") == "fp32"
    with caplog.at_level(logging.WARNING):
        assert TranscribeOptions(precision="bf16").resolved_precision("cpu") == "bf16"
    assert ("emulated" in caplog.text) == (not native_bf16)  # a warning only where bf16 is slow


def test_the_bf16_probe_answers_on_this_machine():
    assert isinstance(devices.cpu_has_native_bf16(), bool)


def test_absent_devices_are_errors():
    import torch

    assert devices.pick_device("auto") in ("cuda", "mps", "cpu")
    assert devices.pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            devices.pick_device("cuda:0")
