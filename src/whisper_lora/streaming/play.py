"""Play audio into a Stream at real-time pace (or as fast as decoding goes) and decode it as it grows.

The pace is the wall clock's: at t seconds after the start, t seconds of the file have arrived, and
a decode that takes longer than a chunk lets the next one hear everything that arrived meanwhile
(the stream decodes at the newest chunk boundary), as a live microphone would.
"""

from __future__ import annotations

import select
import sys
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import AudioError
from .engine import Stream

READ_SECONDS = 0.1  # a pipe is read this much at a time


@dataclass(frozen=True)
class Timed:
    """An event and when it came: wall seconds since the start, and the stream's audio received by then."""
    event: object
    wall: float
    heard: float


def play_array(stream: Stream, audio: np.ndarray, decode: Callable[[np.ndarray], list],
               on_event: Callable[[Timed], None], realtime: bool = True) -> None:
    """Feed audio (16 kHz float32) into stream, decoding with decode(buffer) -> segments."""
    start = time.monotonic()
    chunk = int(stream.options.chunk * SAMPLE_RATE)
    while stream.received < len(audio):
        if realtime:
            now = time.monotonic() - start
            arrived = min(len(audio), int(now * SAMPLE_RATE))
        else:
            arrived = min(len(audio), stream.received + chunk)
        stream.append(audio[stream.received:arrived])
        if stream.received >= len(audio):
            break
        if not _step(stream, decode, on_event, start) and realtime:
            boundary = (stream.received // chunk + 1) * chunk
            time.sleep(max(0.0, min(boundary, len(audio)) / SAMPLE_RATE - (time.monotonic() - start)))
    _drain(stream, decode, on_event, start)


def play_pipe(stream: Stream, pipe: BinaryIO, decode: Callable[[np.ndarray], list],
              on_event: Callable[[Timed], None]) -> None:
    """Feed raw 16-bit little-endian mono PCM at 16 kHz from a pipe (stdin) until it closes."""
    start = time.monotonic()
    block = int(READ_SECONDS * SAMPLE_RATE) * 2
    left = b""
    while True:
        data = pipe.read(block)
        while data and _readable(pipe):  # behind: take all that waits before the next decode
            more = pipe.read(block)
            if not more:
                break
            data += more
        if not data:
            break
        data, left = left + data, b""
        if len(data) % 2:
            data, left = data[:-1], data[-1:]
        stream.append(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0)
        _step(stream, decode, on_event, start)
    if left:
        raise AudioError("stdin: the raw PCM ended in the middle of a sample (16-bit samples are 2 bytes)")
    _drain(stream, decode, on_event, start)


def _readable(pipe) -> bool:
    try:
        return bool(select.select([pipe], [], [], 0)[0])
    except (ValueError, OSError, TypeError):  # not a real file (a test's BytesIO)
        return False


def _step(stream: Stream, decode, on_event, start: float) -> bool:
    audio = stream.take()
    if audio is None:
        return False
    events = stream.update(decode(audio))
    wall = time.monotonic() - start
    for event in events:
        on_event(Timed(event, wall, stream.seconds))
    return True


def _drain(stream: Stream, decode, on_event, start: float) -> None:
    stream.finish()
    while not stream.done:
        if not _step(stream, decode, on_event, start):
            break



def model_spec(model: str, adapter: str | None, cache_dir: str | None = None) -> str:
    """The spec to load: the adapter (a training output folder, which knows its base) when given,
    after checking that it was trained on model."""
    if adapter is None:
        return model
    from ..errors import OptionsError
    from ..models import base_model_of, is_adapter_folder, resolve_hf_folder

    if not is_adapter_folder(adapter):
        raise OptionsError(f"--adapter {adapter}: not a training output folder (no adapter_config.json)")
    trained_on = base_model_of(adapter)
    if trained_on != model and resolve_hf_folder(trained_on, cache_dir) != resolve_hf_folder(model, cache_dir):
        raise OptionsError(f"--adapter {adapter}: trained on {trained_on}, not on --model {model}")
    return adapter


def transcribe_stream(spec: str, source: str, options, stream_options, realtime: bool = True,
                      on_event: Callable[[Timed], None] | None = None) -> list:
    """`whisper-lora stream`: the events of source (an audio file, or "-": raw 16 kHz PCM on stdin)
    transcribed live by the model spec; on_event sees each as it comes."""
    from ..audio import load_audio
    from ..transcribe import Transcriber
    from . import live_options

    options = live_options(options)
    stream = Stream(stream_options)  # its VAD is checked before the model loads
    audio = None if source == "-" else load_audio(source)
    transcriber = Transcriber.from_spec(spec, options)
    events: list[Timed] = []

    def seen(timed: Timed) -> None:
        events.append(timed)
        if on_event is not None:
            on_event(timed)

    def decode(buffer):
        return transcriber.transcribe_arrays([buffer], [source])[0].segments

    if audio is None:
        play_pipe(stream, sys.stdin.buffer, decode, seen)
    else:
        play_array(stream, audio, decode, seen, realtime=realtime)
    return events
