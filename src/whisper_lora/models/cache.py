"""Where converted models are kept: one folder per source, keyed by the hash of its weights,
so each conversion runs once and a changed file is never served from an old result."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from ..fileio import build_once

# Part of every cache key: raise it when a converter's output changes, so old caches are not reused.
CONVERTER_VERSION = 3  # 2: tokenizer has its pad/bos/eos/unk tokens (<|endoftext|>); 3: openai's alignment heads for .pt


def default_cache_dir() -> Path:
    env = os.environ.get("WHISPER_LORA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "whisper-lora"


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """Our folder inside a --cache_dir (shared with the hub's downloads), else the default one."""
    return Path(cache_dir) / "whisper-lora" if cache_dir else default_cache_dir()


def weights_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def cached_conversion(key: str, cache: Path, convert: Callable[[Path], None]) -> Path:
    """Run convert(tmp_dir) once per key; the result appears atomically at cache/converted/key."""
    return build_once(cache / "converted" / f"{key}-v{CONVERTER_VERSION}", convert, done_file="config.json")
