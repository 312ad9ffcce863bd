"""whisper-lora: fine-tune OpenAI Whisper with LoRA adapters, then transcribe, evaluate, merge, export."""

from .errors import AudioError, ManifestError, ModelLoadError, OptionsError, WhisperLoraError
from .audio import SAMPLE_RATE, audio_duration, load_audio
from .manifest import Row, ValidationReport, checked_rows, format_report, read_manifest, validate_manifest
from .models import load_model, pick_device

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
]
