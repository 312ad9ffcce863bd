"""whisper-lora: fine-tune OpenAI Whisper with LoRA adapters, then transcribe, evaluate, merge, export."""

from .errors import AudioError, ManifestError, ModelLoadError, OptionsError, WhisperLoraError
from .audio import SAMPLE_RATE, audio_duration, load_audio
from .data.manifest import Row, read_manifest
from .data.validation import ValidationReport, checked_rows, format_report, validate_manifest
from .devices import pick_device
from .models import load_model

# The rest is imported on first use (PEP 562), so `import whisper_lora` stays fast and light.
# The functions train/transcribe/evaluate/merge/export share their modules' names (a package
# attribute that importing the module replaces), so they are imported from their modules:
# `from whisper_lora.train import train`.
_LAZY = {
    "TrainOptions": ".training.options", "TrainResult": ".train",
    "TranscribeOptions": ".decoding.options", "Transcriber": ".transcribe", "read_audio_list": ".transcribe",
    "FileResult": ".decoding.results", "Segment": ".decoding.results", "EvaluateOptions": ".evaluate",
    "MergeOptions": ".export.merge", "ExportOptions": ".export", "DemoOptions": ".demo", "run_demo": ".demo",
    "error_rates": ".scoring.metrics",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "ManifestError",
    "ModelLoadError",
    "OptionsError",
    "WhisperLoraError",
    "Row",
    "SAMPLE_RATE",
    "ValidationReport",
    "audio_duration",
    "checked_rows",
    "format_report",
    "load_audio",
    "load_model",
    "pick_device",
    "read_manifest",
    "validate_manifest",
    *_LAZY,
]
