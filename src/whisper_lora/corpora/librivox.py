"""Five LibriVox utterances (Sense and Sensibility, read by a person; public domain) from
pocketsphinx-testdata, with their transcripts: a small check of real English speech, and of how
much a model fine-tuned on another language forgets English."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..fileio import write_text
from .debian import package_root

PACKAGE = "pocketsphinx-testdata"
FOLDER = Path("usr/share/pocketsphinx/test/data/librivox")
# "<s> words </s> (file-id)" per line, lower case, no punctuation
_LINE = re.compile(r"^<s>\s*(.*?)\s*</s>\s*\((\S+)\)\s*$")


def parse_transcription(text: str) -> dict[str, str]:
    """{file id: transcript} from pocketsphinx's transcription file."""
    lines = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            lines[match.group(2)] = match.group(1)
    return lines


def write_manifest(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A .jsonl manifest of the five utterances (absolute paths into the cache)."""
    folder = package_root(PACKAGE, cache_dir) / FOLDER
    lines = parse_transcription((folder / "transcription").read_text(encoding="utf-8"))
    rows = [{"audio_path": str(folder / f"{file_id}.wav"), "text": text, "language": "en"}
            for file_id, text in sorted(lines.items()) if (folder / f"{file_id}.wav").is_file()]
    return write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
