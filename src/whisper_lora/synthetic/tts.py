"""Synthetic speech with espeak-ng, for tests, benchmarks and the demo.

espeak-ng is a formant synthesiser: its voices are clear but robotic, so Whisper makes
realistic errors on them and fine-tuning on them gives a measurable gain."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import WhisperLoraError
from ..fileio import atomic_path

ESPEAK = "espeak-ng"


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def synthesize(text: str, path: str | os.PathLike, voice: str = "en-us", speed: int = 160,
               pitch: int = 50) -> Path:
    """Speak `text` with espeak-ng into the WAV file `path` (22.05 kHz mono, as espeak writes it).

    speed is in words per minute, pitch 0-99; both vary a voice for train/test splits."""
    if not espeak_available():
        raise WhisperLoraError(
            "espeak-ng is not installed; install it with `sudo apt-get install espeak-ng` "
            "(or run `make setup`, which installs it)")
    with atomic_path(path) as tmp:
        cmd = [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp), "--", text]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.stat().st_size:
            raise WhisperLoraError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()}")
    return Path(path)


def synthesize_cached(text: str, folder: str | os.PathLike, voice: str = "en-us", speed: int = 160,
                      pitch: int = 50) -> Path:
    """Like synthesize, but reuse the file when the same text and voice were made before."""
    key = hashlib.sha1(f"{voice}|{speed}|{pitch}|{text}".encode("utf-8")).hexdigest()[:16]
    path = Path(folder) / f"{voice}-{key}.wav"
    if not path.exists():
        synthesize(text, path, voice=voice, speed=speed, pitch=pitch)
    return path
