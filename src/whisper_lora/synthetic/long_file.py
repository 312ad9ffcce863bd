"""One long WAV file of many sentences, with the time of each: for long-form transcription and
timestamp checks. The clips are trimmed of their silence and joined with pauses of a known length,
so every segment's start and end are those of the speech itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from ..errors import WhisperLoraError
from ..fileio import atomic_path

SILENCE_LEVEL = 0.01  # |sample| below this counts as silence when trimming clips


def _trim(samples: np.ndarray, rate: int) -> np.ndarray:
    """Drop leading and trailing silence, keeping 20 ms either side of the speech."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL)
    if loud.size == 0:
        return samples[:0]
    margin = int(0.02 * rate)
    return samples[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def build_long_file(texts: list[str], speak, path: Path, long_seconds: float,
                    pause_seconds: float) -> tuple[list[dict], float]:
    """Speak texts in order (speak(list of texts) -> list of WAV paths) and join the clips, trimmed
    of silence, with pauses into one WAV at path, stopping once it reaches long_seconds or the texts
    run out. Returns the segments ({"start", "end", "text"}, in seconds, of the speech itself) and
    the file's length in seconds."""
    rate = pause = None
    pieces, segments = [], []
    position = 0  # samples so far
    done = 0
    while done < len(texts) and (rate is None or position / rate < long_seconds):
        # Speak a batch at once, for the worker pool: clips last at least ~2 s with their pause.
        batch = texts[done:done + max(2, int((long_seconds - (position / rate if rate else 0)) / 2) + 1)]
        for clip, text in zip(speak(batch), batch):
            done += 1
            samples, clip_rate = soundfile.read(clip, dtype="float32")
            if rate is None:
                rate = clip_rate
                pause = np.zeros(int(round(pause_seconds * rate)), dtype=np.float32)
                pieces.append(pause)  # start with a pause, as real recordings do
                position = len(pause)
            elif clip_rate != rate:
                raise WhisperLoraError(f"{clip}: sample rate {clip_rate} differs from the other clips' {rate}")
            if samples.ndim == 2:
                samples = samples.mean(axis=1)
            speech = _trim(samples, rate)
            segments.append({"start": round(position / rate, 3),
                             "end": round((position + len(speech)) / rate, 3), "text": text})
            pieces += [speech, pause]
            position += len(speech) + len(pause)
            if position / rate >= long_seconds:
                break
    if rate is None:
        raise WhisperLoraError("the long file needs at least one sentence")
    with atomic_path(path) as tmp:
        soundfile.write(tmp, np.concatenate(pieces), rate, subtype="PCM_16")
    return segments, position / rate
