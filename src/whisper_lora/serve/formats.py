"""OpenAI's response formats and error shape, from a FileResult."""

from __future__ import annotations

from ..decoding.results import FileResult
from ..decoding.writers import srt_text, vtt_text

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TIMED_FORMATS = ("srt", "vtt", "verbose_json")  # these need segment times


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict:
    """OpenAI's error shape, which its clients turn into their own exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def render(result: FileResult, response_format: str, task: str, temperature: float) -> tuple[str | dict, str]:
    """(body, media type) of one transcript in an OpenAI response format."""
    if response_format == "json":
        return {"text": result.text}, "application/json"
    if response_format == "text":
        return result.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return srt_text(result), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return vtt_text(result), "text/vtt; charset=utf-8"
    return verbose_json(result, task, temperature), "application/json"


def verbose_json(result: FileResult, task: str, temperature: float) -> dict:
    """openai-whisper's result: language by name, duration, text and timed segments. Fields our
    decoder does not keep per segment (tokens, log-probability, ...) are empty or null."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    segments = [{"id": i, "seek": int(round(s.start * 100)), "start": round(s.start, 3), "end": round(s.end, 3),
                 "text": s.text, "tokens": [], "temperature": temperature, "avg_logprob": None,
                 "compression_ratio": None, "no_speech_prob": None}
                for i, s in enumerate(result.segments)]
    body = {"task": "translate" if task == "translate" else "transcribe",
            "language": LANGUAGES.get(result.language or "", result.language or ""),
            "duration": round(result.duration or 0.0, 3), "text": result.text, "segments": segments}
    words = [w for s in result.segments for w in s.words]
    if words:  # asked for with timestamp_granularities[] word; OpenAI's words carry no space or probability
        body["words"] = [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for w in words]
    return body
