"""Error types. Each message names the file, row or flag at fault and says what to do,
so the CLI can print it as is instead of a traceback."""


class WhisperLoraError(Exception):
    """Base class: a problem the user can fix; the CLI prints the message and exits 1 (or 2)."""


class AudioError(WhisperLoraError):
    """An audio file is missing, empty or cannot be decoded."""


class ManifestError(WhisperLoraError):
    """A manifest file cannot be read at all (not JSON, wrong shape, not UTF-8)."""


class ModelLoadError(WhisperLoraError):
    """A model spec cannot be turned into a model (missing, unreachable hub, bad checksum)."""


class OptionsError(WhisperLoraError):
    """Flags that are invalid or clash with each other."""
