"""OpenAI's Realtime API for transcription on /v1/realtime?intent=transcription.

Both of OpenAI's dialects: the GA one that today's official client speaks (session.update with
session.type "transcription" and audio.input.{format, transcription, turn_detection}; answered with
session.created / session.updated), and the beta's (header OpenAI-Beta: realtime=v1):

    in:  transcription_session.update {session: {input_audio_format, input_audio_transcription:
         {model, language, prompt}, turn_detection: {type: server_vad, silence_duration_ms} | null}},
         input_audio_buffer.append {audio: base64 of 16-bit PCM at 24 kHz}, input_audio_buffer.commit,
         input_audio_buffer.clear
    out: transcription_session.created / .updated, input_audio_buffer.speech_started / .speech_stopped /
         .committed / .cleared, conversation.item.input_audio_transcription.delta (final words only:
         a delta is never taken back) and .completed (the turn's transcript), error

A turn of the stream is OpenAI's item. `model` picks a served model or adapter by name (OpenAI's
own names, e.g. gpt-4o-transcribe, are the base model). With turn_detection null the client ends
each turn with input_audio_buffer.commit, and words become final by agreement only. A bad event
gets an error event naming its field, as OpenAI answers, and the session goes on.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..streaming import Final, Partial, Stream, StreamOptions, TurnEnd
from .streams import Closed, Live, Resampler, admit, close, pump

OPENAI_RATE = 24000  # pcm16 in OpenAI's Realtime API: 24 kHz mono, little-endian
OPENAI_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")  # names for the base model


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Session:
    """One realtime transcription session: its settings, items and the events it sends."""

    def __init__(self, ws: WebSocket, models, job_for):
        self.ws, self.models, self.job_for = ws, models, job_for
        self.id = _id("sess")
        self.model, self.language, self.prompt = "whisper-1", "", ""
        self.silence_ms: int | None = 500
        self.rate = OPENAI_RATE
        self.ga = "realtime=v1" not in ws.headers.get("openai-beta", "")
        self.item: str | None = None
        self.previous_item: str | None = None
        self.items = itertools.count()

    def description(self) -> dict:
        vad = None if self.silence_ms is None else {"type": "server_vad", "threshold": 0.5,
                                                      "prefix_padding_ms": 300, "silence_duration_ms": self.silence_ms}
        transcription = {"model": self.model, "language": self.language, "prompt": self.prompt}
        if self.ga:
            return {"type": "transcription", "id": self.id, "object": "realtime.transcription_session",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate}, "noise_reduction": None,
                                        "transcription": transcription, "turn_detection": vad}},
                    "include": None}
        return {"id": self.id, "object": "realtime.transcription_session", "input_audio_format": "pcm16",
                "input_audio_transcription": transcription, "turn_detection": vad,
                "input_audio_noise_reduction": None, "include": None}

    def settings(self, given: dict) -> tuple[str | None, int, dict, tuple]:
        """(a bad format's message, rate, transcription fields, (turn_detection given?, its value))
        of a session update in either dialect."""
        if self.ga or "audio" in given:
            audio = (given.get("audio") or {}).get("input") or {}
            fmt = audio.get("format") or {"type": "audio/pcm", "rate": self.rate}
            rate = fmt.get("rate", OPENAI_RATE)
            bad = None
            if fmt.get("type") != "audio/pcm" or not isinstance(rate, int) or not 8000 <= rate <= 48000:
                bad = (f"audio.input.format {fmt!r}: this server takes audio/pcm (16-bit, 24000 Hz as OpenAI "
                       "sends; 8000-48000 accepted)")
            vad = ("turn_detection" in audio, audio.get("turn_detection"))
            return bad, rate, audio.get("transcription") or {}, vad
        fmt = given.get("input_audio_format", "pcm16")
        bad = None if fmt == "pcm16" else f"input_audio_format {fmt!r}: this server takes pcm16 (24 kHz)"
        return bad, OPENAI_RATE, given.get("input_audio_transcription") or {}, \
            ("turn_detection" in given, given.get("turn_detection"))

    async def emit(self, kind: str, **fields) -> None:
        await self.ws.send_json({"type": kind, "event_id": _id("event"), **fields})

    async def error(self, message: str, param: str | None = None, event_id: str | None = None,
                    code: str = "invalid_value") -> None:
        await self.emit("error", error={"type": "invalid_request_error", "code": code, "message": message,
                                        "param": param, "event_id": event_id})

    def job(self):
        name = self.model if self.model not in OPENAI_MODELS else self.models.options.base_name
        query = {"model": name, "language": self.language or None, "prompt": self.prompt or None}
        return self.job_for({k: v for k, v in query.items() if v})

    def stream_options(self) -> StreamOptions:
        if self.silence_ms is None:
            return StreamOptions(policy="agreement")
        return StreamOptions(policy="both", turn_silence=max(0.1, min(10.0, self.silence_ms / 1000)))

    async def send(self, event) -> None:
        """A stream event as OpenAI's events."""
        if isinstance(event, Partial) and not event.text:
            return
        if self.item is None and isinstance(event, (Partial, Final)):
            self.item = _id("item")
            start = event.start if isinstance(event, Final) else 0.0
            await self.emit("input_audio_buffer.speech_started", audio_start_ms=int(start * 1000), item_id=self.item)
        if isinstance(event, Final):
            delta = event.text if not self._said else " " + event.text
            self._said = True
            await self.emit("conversation.item.input_audio_transcription.delta", item_id=self.item,
                            content_index=0, delta=delta)
        elif isinstance(event, TurnEnd):
            await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(event.end * 1000), item_id=self.item)
            await self.emit("input_audio_buffer.committed", previous_item_id=self.previous_item, item_id=self.item)
            await self.emit("conversation.item.input_audio_transcription.completed", item_id=self.item,
                            content_index=0, transcript=event.text)
            self.previous_item, self.item, self._said = self.item, None, False

    _said = False


async def realtime(ws: WebSocket, models, options, batcher, slots, job_for) -> None:
    if not await admit(ws, options.api_key, slots):
        return
    try:
        session = Session(ws, models, job_for)
        resample = Resampler(OPENAI_RATE)
        live = Live(Stream(session.stream_options()), session.job(), batcher, session.send,
                    options.max_stream_minutes * 60)
        await session.emit("session.created" if session.ga else "transcription_session.created",
                           session=session.description())

        async def receive(message) -> bool:
            if message.get("text") is None:
                await session.error("send JSON text messages; audio goes base64 in input_audio_buffer.append")
                return True
            try:
                event = json.loads(message["text"])
                kind = event.get("type")
            except (ValueError, AttributeError):
                await session.error("the message is not a JSON object with a 'type'", "type")
                return True
            event_id = event.get("event_id")
            if kind == "input_audio_buffer.append":
                try:
                    data = base64.b64decode(event.get("audio") or "", validate=True)
                except (binascii.Error, TypeError, ValueError):
                    await session.error("audio: not base64 (16-bit PCM at 24 kHz, base64-encoded)", "audio", event_id)
                    return True
                live.feed(resample(data))
            elif kind == "input_audio_buffer.commit":
                live.stream.end_turn()
                live.wake.set()
            elif kind == "input_audio_buffer.clear":
                live.stream.clear()
                await session.emit("input_audio_buffer.cleared")
            elif kind in ("transcription_session.update", "session.update"):
                await update(event, event_id)
            else:
                await session.error(f"type {kind!r}: this server takes transcription_session.update and "
                                    "input_audio_buffer.append / commit / clear", "type", event_id)
            return True

        async def update(event, event_id) -> None:
            given = event.get("session")
            if not isinstance(given, dict):
                return await session.error("session: an object", "session", event_id)
            bad, rate, transcription, (vad_given, vad) = session.settings(given)
            if bad:
                return await session.error(bad, "session.audio.input.format" if session.ga
                                           else "session.input_audio_format", event_id)
            before = (session.model, session.language, session.prompt, session.silence_ms, session.rate)
            session.model = transcription.get("model") or session.model
            session.language = transcription.get("language") if "language" in transcription else session.language
            session.prompt = transcription.get("prompt") if "prompt" in transcription else session.prompt
            if vad_given:
                session.silence_ms = None if vad is None else int(vad.get("silence_duration_ms", 500))
            session.rate = rate
            try:
                job = session.job()
            except Closed as exc:
                session.model, session.language, session.prompt, session.silence_ms, session.rate = before
                return await session.error(exc.reason, "session.audio.input.transcription" if session.ga
                                           else "session.input_audio_transcription", event_id)
            if (session.silence_ms, session.rate) != before[3:]:
                if live.stream.received:
                    session.silence_ms, session.rate = before[3:]
                    return await session.error("turn_detection and the audio format: set them before the "
                                               "first audio", "session", event_id)
                live.stream = Stream(session.stream_options())
                nonlocal resample
                resample = Resampler(session.rate)
            live.job = job
            await session.emit("session.updated" if session.ga else "transcription_session.updated",
                               session=session.description())

        await pump(ws, live, receive, options.stream_idle_seconds)
        await close(ws, 1000, "done")
    except Closed as exc:
        await close(ws, exc.code, exc.reason)
    except WebSocketDisconnect:
        pass
    finally:
        slots.give()
