"""Live streams over WebSockets: /v1/stream (raw PCM in, partial and final text out) and, in
realtime.py, OpenAI's Realtime transcription events on /v1/realtime.

Each stream is a streaming.Stream fed by the socket; its buffers go through the server's Batcher
like uploads do, so streams that decode at the same moment with the same model are decoded in one
batch. A stream that breaks a rule is closed with a code and a reason that says what to do; the
other streams and requests never notice.

/v1/stream, for any WebSocket client:
    ws://HOST:PORT/v1/stream?model=NAME&language=en&sample_rate=16000
    query: model (default: the base), language, prompt, glossary (terms separated by commas),
           sample_rate (8000-48000, default 16000; resampled to 16 kHz), policy, chunk, agree
    in:  binary messages of 16-bit little-endian mono PCM; the text message {"type": "end"} when done
    out: {"type": "ready", "model": ...}, then {"type": "partial", "text", "turn"} (may change),
         {"type": "final", "text", "start", "end", "turn"} (never changes; times in seconds of
         stream time), {"type": "turn", "text", "start", "end", "turn"} (a turn's whole text), and
         {"type": "done"} before the server closes the socket (code 1000).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import SAMPLE_RATE
from ..errors import OptionsError
from ..streaming import Stream, StreamOptions, event_json
from .models import Job

log = logging.getLogger(__name__)

# Close codes (RFC 6455): what the client did wrong, in the reason.
BAD_DATA = 1003  # audio in a form we do not take
POLICY = 1008  # a wrong key, a bad field, a stream over its limits, a silent client
TRY_LATER = 1013  # the server has --max_streams streams already
KEY_PROTOCOL = "openai-insecure-api-key."  # how browsers send a key: a subprotocol (OpenAI's own way)


class Closed(Exception):
    """The stream is to be closed with code and reason (after its words so far are sent)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason[:120]  # a close reason is at most 123 bytes


class Slots:
    """How many streams are live; one over the limit is refused."""

    def __init__(self, limit: int):
        self.limit, self.live = limit, 0

    def take(self) -> bool:
        if self.live >= self.limit:
            return False
        self.live += 1
        return True

    def give(self) -> None:
        self.live -= 1


def key_ok(ws: WebSocket, api_key: str | None) -> bool:
    """The key in 'Authorization: Bearer KEY' or in a subprotocol openai-insecure-api-key.KEY."""
    if not api_key:
        return True
    given = ws.headers.get("authorization", "")
    if secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
        return True
    return any(secrets.compare_digest(p.encode(), f"{KEY_PROTOCOL}{api_key}".encode())
               for p in ws.scope.get("subprotocols", []))


def accept_protocol(ws: WebSocket) -> str | None:
    """The subprotocol to answer with: a browser that offered one gets one back, or it fails the socket."""
    offered = ws.scope.get("subprotocols", [])
    plain = [p for p in offered if not p.startswith(KEY_PROTOCOL)]
    return (plain or offered or [None])[0]


class Resampler:
    """16-bit PCM bytes at rate -> float32 at 16 kHz, the state kept between messages (soxr)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._soxr = None
        if rate != SAMPLE_RATE:
            import soxr

            self._soxr = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        self._left = b""

    def __call__(self, data: bytes, last: bool = False) -> np.ndarray:
        data, self._left = self._left + data, b""
        if len(data) % 2:
            data, self._left = data[:-1], data[-1:]
        audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        if self._soxr is not None:
            audio = self._soxr.resample_chunk(audio, last=last)
        return audio


@dataclass
class Live:
    """A stream being decoded: the socket's audio goes in, its events come out through send."""
    stream: Stream
    job: Job
    batcher: object
    send: object  # async send(event)
    max_seconds: float

    def __post_init__(self):
        self.wake = asyncio.Event()
        self.failed: Closed | None = None

    def feed(self, audio: np.ndarray) -> None:
        room = int(self.max_seconds * SAMPLE_RATE) - self.stream.received
        if len(audio) >= room:
            self.stream.append(audio[:max(0, room)])
            self.finish()
            self.failed = Closed(POLICY, f"the stream reached the server's limit of {self.max_seconds / 60:g} "
                                         "minutes (--max_stream_minutes); its text so far was sent")
        elif len(audio):
            self.stream.append(audio)
        self.wake.set()

    def finish(self) -> None:
        self.stream.finish()
        self.wake.set()

    async def decode(self) -> None:
        """Decode whenever the stream is ready, until it is done."""
        name = f"stream:{id(self)}"
        while not self.stream.done:
            await self.wake.wait()
            self.wake.clear()
            while self.stream.ready():
                audio = self.stream.take()
                if audio is None:
                    continue
                try:
                    result = await asyncio.wrap_future(self.batcher.submit(self.job, audio, name))
                except Exception:  # noqa: BLE001 - logged by the batcher
                    raise Closed(1011, "the server failed to decode this stream") from None
                for event in self.stream.update(result.segments):
                    await self.send(event)


async def pump(ws: WebSocket, live: Live, receive, idle: float) -> None:
    """Run live's decoder while receive(message) handles each message (returns False at the end)."""
    decoder = asyncio.create_task(live.decode())
    try:
        while not live.stream.finished:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=idle)
            except asyncio.TimeoutError:
                live.finish()
                raise Closed(POLICY, f"no message for {idle:g} s (--stream_idle_seconds); send audio or "
                                     "end the stream") from None
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if not await receive(message):
                live.finish()
            if live.failed:
                raise live.failed
        await decoder
    except BaseException:
        if isinstance(decoder, asyncio.Task) and not decoder.done():
            if live.stream.finished and ws.client_state == WebSocketState.CONNECTED:
                try:  # the rules were broken at the end: the words so far still go out
                    await asyncio.wait_for(asyncio.shield(decoder), timeout=30)
                except BaseException:  # noqa: BLE001
                    decoder.cancel()
            else:
                decoder.cancel()
        raise


async def admit(ws: WebSocket, api_key: str | None, slots: Slots) -> bool:
    """Accept the socket; True when its key is right and it got a slot (give it back when done),
    else it is closed with the reason."""
    await ws.accept(subprotocol=accept_protocol(ws))
    if not key_ok(ws, api_key):
        await close(ws, POLICY, "Incorrect API key: send 'Authorization: Bearer KEY' or the "
                                "subprotocol openai-insecure-api-key.KEY")
        return False
    if not slots.take():
        await close(ws, TRY_LATER, f"the server has {slots.limit} live streams (--max_streams); try later")
        return False
    return True


async def close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.client_state == WebSocketState.CONNECTED:
        try:
            await ws.close(code=code, reason=reason)
        except Exception:  # noqa: BLE001 - the client may be gone already
            pass


def stream_options(query) -> StreamOptions:
    """The policy and chunk a client asked for (a bad one: Closed naming the field)."""
    try:
        kwargs = {}
        if query.get("policy"):
            kwargs["policy"] = query["policy"]
        if query.get("chunk"):
            kwargs["chunk"] = float(query["chunk"])
        if query.get("agree"):
            kwargs["agree"] = int(query["agree"])
        return StreamOptions(**kwargs)
    except (OptionsError, ValueError) as exc:
        raise Closed(POLICY, f"policy/chunk/agree: {exc}".replace("--", "")) from None


def sample_rate(query) -> int:
    given = query.get("sample_rate") or str(SAMPLE_RATE)
    if not given.isdigit() or not 8000 <= int(given) <= 48000:
        raise Closed(POLICY, f"sample_rate {given!r}: send 16-bit PCM at 8000 to 48000 Hz (16000 is best)")
    return int(given)


async def native(ws: WebSocket, models, options, batcher, slots: Slots, job_for) -> None:
    """/v1/stream: see the module's docstring."""
    if not await admit(ws, options.api_key, slots):
        return
    try:
        query = ws.query_params
        job = job_for(query)
        resample = Resampler(sample_rate(query))
        stream = Stream(stream_options(query))

        async def send(event):
            await ws.send_json(event_json(event))

        live = Live(stream, job, batcher, send, options.max_stream_minutes * 60)
        await ws.send_json({"type": "ready", "model": job.model, "sample_rate": resample.rate,
                            "policy": stream.options.policy, "chunk": stream.options.chunk})

        async def receive(message) -> bool:
            if message.get("bytes") is not None:
                data = message["bytes"]
                if stream.received == 0 and data[:4] == b"RIFF":
                    raise Closed(BAD_DATA, "audio: that is a WAV file; send its raw 16-bit PCM samples, "
                                           "without the header")
                live.feed(resample(data))
                return True
            try:
                kind = json.loads(message.get("text") or "").get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "end":
                live.feed(resample(b"", last=True))
                return False
            raise Closed(BAD_DATA, "send audio as binary messages of 16-bit PCM, and the text "
                                   "{\"type\": \"end\"} when done")

        await pump(ws, live, receive, options.stream_idle_seconds)
        await ws.send_json({"type": "done"})
        await close(ws, 1000, "done")
    except Closed as exc:
        await close(ws, exc.code, exc.reason)
    except WebSocketDisconnect:
        pass  # the client left; its stream ends here
    finally:
        slots.give()
