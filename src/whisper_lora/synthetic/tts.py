"""Synthetic speech with espeak-ng, for tests, benchmarks and the demo: a Voice (name, speed,
pitch), one clip (synthesize, synthesize_cached: reused when the same text and voice were spoken
before), many clips in parallel (speak_all).

espeak-ng is a formant synthesiser: its voices are clear but robotic, so Whisper makes
realistic errors on them and fine-tuning on them gives a measurable gain."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionsError, WhisperLoraError
from ..fileio import atomic_path

ESPEAK = "espeak-ng"


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice with its rate and pitch; written "name[:speed[:pitch]]" on command lines."""

    name: str  # espeak-ng voice, optionally with a variant: "en-us", "en-gb-x-gbclan+m3", "cmn-latn-pinyin"
    speed: int = 160  # words per minute (espeak-ng -s); 80-450
    pitch: int = 50  # base pitch (espeak-ng -p); 0-99

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\+[A-Za-z0-9_-]+)?", self.name or ""):
            raise OptionsError(f"voice {self.name!r}: expected an espeak-ng voice such as en-us or "
                               f"en-gb-scotland+m3 (list them with `espeak-ng --voices`)")
        if not 80 <= self.speed <= 450:
            raise OptionsError(f"voice {self.name}: speed {self.speed} words per minute is outside 80-450")
        if not 0 <= self.pitch <= 99:
            raise OptionsError(f"voice {self.name}: pitch {self.pitch} is outside 0-99")

    @classmethod
    def parse(cls, spec: str | Voice) -> Voice:
        """"en-us+m3:150:40" -> Voice("en-us+m3", 150, 40); speed and pitch may be left out."""
        if isinstance(spec, Voice):
            return spec
        name, *numbers = str(spec).strip().split(":")
        if len(numbers) > 2 or not all(n.strip().isdigit() for n in numbers):
            raise OptionsError(f"voice {spec!r}: write it as NAME[:SPEED[:PITCH]], e.g. en-gb-scotland:160:50")
        return cls(name, *(int(n) for n in numbers))

    def __str__(self) -> str:
        return f"{self.name}:{self.speed}:{self.pitch}"


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


def speak_all(jobs: list[tuple[str, Voice]], folder: Path, workers: int, progress: bool) -> list[Path]:
    """Synthesize (text, voice) jobs into folder, workers at a time, and return one path per job.

    Repeated jobs are spoken once (two processes must never write the same file at once), and clips
    already in folder are reused."""
    unique = list(dict.fromkeys(jobs))

    def one(job):
        text, voice = job
        return synthesize_cached(text, folder, voice=voice.name, speed=voice.speed, pitch=voice.pitch)

    bar = None
    if progress and unique:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(unique), desc="espeak-ng speech", unit="clip")
    done = {}
    # espeak-ng runs as a separate process per clip, so threads run them in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job, path in zip(unique, pool.map(one, unique)):
            done[job] = path
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return [done[job] for job in jobs]
