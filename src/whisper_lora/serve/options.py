"""What `whisper-lora serve` is told: the models, where to listen, and its limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import OptionsError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
BASE_NAME = "whisper-1"  # what OpenAI's clients send by default: it names the base model here
ALL_MODELS = "*"  # the glossaries key of a default glossary for every served model


@dataclass(frozen=True)
class ServeOptions:
    model: str  # the base model: any spec load_model accepts
    adapters: dict[str, str] = field(default_factory=dict)  # request `model` name -> adapter folder
    base_name: str = BASE_NAME  # the base model's name in requests (its spec is accepted too)
    host: str = "127.0.0.1"  # loopback unless told otherwise: the server has no TLS of its own
    port: int = 8000  # 0: any free port (serving() yields the URL it got)
    api_key: str | None = None  # when set, every /v1 request needs "Authorization: Bearer KEY"
    max_upload_mb: float = 25.0  # OpenAI's own limit on an upload
    max_audio_seconds: float = 4 * 3600.0  # longer uploads are refused before decoding
    max_batch: int = 16  # requests decoded together at most
    batch_wait_ms: float = 20.0  # how long the first request of a batch waits for company
    device: str = "auto"
    precision: str = "auto"
    cache_dir: str | None = None
    # served model name -> glossary file (one term per line): the terms of its requests that
    # send none of their own; ALL_MODELS names the default of every model without one
    glossaries: dict[str, str] = field(default_factory=dict)
    max_streams: int = 8  # live WebSocket streams at once; one more is closed with a reason
    max_stream_minutes: float = 240.0  # a stream is ended (its text sent) after this much audio
    stream_idle_seconds: float = 30.0  # a stream that sends nothing this long is closed

    def __post_init__(self):
        for name in (self.base_name, *self.adapters):
            if not NAME.match(name):
                raise OptionsError(f"--adapter {name!r}: a name is letters, digits and . _ : - (up to 64), "
                                   "starting with a letter or digit")
        if self.base_name in self.adapters:
            raise OptionsError(f"--adapter {self.base_name}: that name is the base model's (--base_name)")
        if not 0 <= self.port < 65536:
            raise OptionsError(f"--port {self.port}: use 1 to 65535 (0: any free port)")
        if self.max_upload_mb <= 0 or self.max_audio_seconds <= 0:
            raise OptionsError("--max_upload_mb and --max_audio_seconds must be positive")
        if self.max_batch < 1 or self.batch_wait_ms < 0:
            raise OptionsError("--max_batch must be at least 1 and --batch_wait_ms at least 0")
        for name in self.glossaries:
            if name != ALL_MODELS and name not in (self.base_name, *self.adapters):
                raise OptionsError(f"--glossary {name}=...: no served model is named {name!r}; the names are "
                                   f"{', '.join([self.base_name, *self.adapters])}")
        if self.max_streams < 0 or self.max_stream_minutes <= 0 or self.stream_idle_seconds <= 0:
            raise OptionsError("--max_streams must be at least 0 (0: no streams), --max_stream_minutes and "
                               "--stream_idle_seconds positive")
        if self.api_key is not None and not self.api_key.strip():
            raise OptionsError("--api_key is empty; leave it out to serve without a key")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def parse_adapter(text: str) -> tuple[str, str]:
    """'NAME=PATH' -> (NAME, PATH); a bare PATH is named after its folder."""
    name, sep, path = text.partition("=")
    if not sep:
        from pathlib import Path

        path, name = text, Path(text.rstrip("/")).name
    if not name or not path:
        raise OptionsError(f"--adapter {text!r}: use NAME=PATH (PATH: a training output folder)")
    return name, path


def parse_glossary(text: str) -> tuple[str, str]:
    """'NAME=FILE' -> (NAME, FILE); a bare FILE is every model's default (ALL_MODELS)."""
    name, sep, path = text.partition("=")
    if not sep:
        return ALL_MODELS, text
    if not name or not path:
        raise OptionsError(f"--glossary {text!r}: use FILE (every model) or NAME=FILE (one model)")
    return name, path
