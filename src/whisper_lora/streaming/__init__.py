"""Live transcription: text while the person is still speaking, from a file, stdin or a server's WebSocket.

engine.py holds one stream's rules (LocalAgreement-2 and VAD end of turn, the buffer and its cuts);
play.py drives a stream from a file or a pipe for `whisper-lora stream`; the server's WebSockets
(serve/streams.py) drive the same engine and decode many streams' buffers in one batch.
"""

from __future__ import annotations

from .engine import POLICIES, Final, Partial, Stream, StreamOptions, TurnEnd, event_json


def live_options(options):
    """TranscribeOptions as a stream's buffer is decoded, by `whisper-lora stream` and the server
    alike: with timestamps (the buffer is cut at segment ends), alone in its window and at one
    temperature. The buffer is decoded again within a second, so a fallback's second decode or a
    packed window's check would only make its words later (benchmarks/stream_latency.py)."""
    from dataclasses import replace

    return replace(options, return_timestamps=True, pack=False, temperatures=options.temperatures[:1])


__all__ = ["POLICIES", "Final", "Partial", "Stream", "StreamOptions", "TurnEnd", "event_json", "live_options"]
