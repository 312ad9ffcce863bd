"""Live transcription: text while the person is still speaking, from a file, stdin or a server's WebSocket.

engine.py holds one stream's rules (LocalAgreement-2 and VAD end of turn, the buffer and its cuts);
play.py drives a stream from a file or a pipe for `whisper-lora stream`; the server's WebSockets
(serve/streams.py) drive the same engine and decode many streams' buffers in one batch.
"""

from __future__ import annotations

from .engine import POLICIES, Final, Partial, Stream, StreamOptions, TurnEnd, event_json

__all__ = ["POLICIES", "Final", "Partial", "Stream", "StreamOptions", "TurnEnd", "event_json"]
