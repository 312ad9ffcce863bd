"""whisper-lora: fine-tune OpenAI Whisper with LoRA adapters, then transcribe, evaluate, merge, export."""

from .errors import AudioError, ManifestError, ModelLoadError, OptionsError, WhisperLoraError
from .models import load_model, pick_device

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "ManifestError",
    "ModelLoadError",
    "OptionsError",
    "WhisperLoraError",
    "load_model",
    "pick_device",
]
