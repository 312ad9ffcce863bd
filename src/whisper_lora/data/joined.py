"""Clips joined into 30-second windows with pauses between them: speech whose timing is known.

Where each clip's speech starts and ends in the window is known from its loudness, so the
windows test word and segment times (decoding/align_heads.py, the word-timestamp tests and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE

WINDOW_SECONDS = 28.0  # joined clips fill windows up to this (Whisper reads 30 s)
GAP_SECONDS = 0.6  # silence between joined clips
SPEECH_DB = 30.0  # a 10-ms frame within this many dB of the clip's loudest frame is speech


@dataclass
class Window:
    audio: np.ndarray  # 16 kHz float32, at most WINDOW_SECONDS
    starts: list[float]  # where each clip's speech starts in the window, seconds
    ends: list[float]  # where it ends
    texts: list[str]  # each clip's transcript


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    """(start, end) in seconds of the part of a clip with speech: from the first to the last 10-ms
    frame within SPEECH_DB of the loudest."""
    frame = SAMPLE_RATE // 100
    n = max(1, len(audio) // frame)
    rms = np.sqrt(np.mean(np.square(audio[:n * frame].reshape(n, -1)), axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -SPEECH_DB)
    return loud[0] * frame / SAMPLE_RATE, (loud[-1] + 1) * frame / SAMPLE_RATE


def join_clips(clips: list[tuple[np.ndarray, str]], gap: float = GAP_SECONDS,
               window: float = WINDOW_SECONDS) -> list[Window]:
    """Clips (audio, text), each cut to its speech, joined gap apart into windows, in order."""
    windows, current, parts = [], None, []
    pause = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
    for audio, text in clips:
        a, b = speech_span(audio)
        speech = audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)]
        if len(speech) > window * SAMPLE_RATE:
            continue
        length = sum(map(len, parts)) / SAMPLE_RATE
        if current is None or length + gap + len(speech) / SAMPLE_RATE > window:
            if current is not None:
                current.audio = np.concatenate(parts)
            current, parts = Window(np.zeros(0, np.float32), [], [], []), [pause]
            windows.append(current)
            length = gap
        current.starts.append(length)
        current.ends.append(length + len(speech) / SAMPLE_RATE)
        current.texts.append(text.strip())
        parts += [speech.astype(np.float32), pause]
    if current is not None:
        current.audio = np.concatenate(parts)
    return windows
