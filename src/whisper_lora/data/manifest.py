"""Training manifests: read them, resolve their audio paths, and check every row at once.

Two formats, chosen by extension and content:
- a JSON list, as in the original README: [{"audio_path": "./audio/a.wav", "text": "..."}, ...]
  (row N is the Nth object of the list);
- JSON Lines (.jsonl, or a file whose first character is "{"): one object per line
  (row N is line N of the file, so an editor jumps straight to it; blank lines are skipped).

Keys: audio_path and text are required; language (a Whisper code such as "en" or a name such as
"english") and segments ([{"start": s, "end": s, "text": ...}]) are optional. Any other key is a
warning, not an error: manifests often carry extra metadata (speaker, duration), but a misspelt
optional key would otherwise be ignored silently, so it is printed with the key it resembles.
Relative audio paths resolve against the manifest's folder, so a dataset folder can move as a whole.

validation.py checks the rows' audio too; this module reads and parses the file.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from ..languages import lookup_language

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("audio_path", "text")
OPTIONAL_KEYS = ("language", "segments")
# Names other tools use for the same fields (NeMo, Common Voice, HF datasets): named in the message.
KEY_ALIASES = {
    "audio_filepath": "audio_path", "audio": "audio_path", "path": "audio_path", "file": "audio_path",
    "audio_file": "audio_path", "filename": "audio_path", "wav": "audio_path",
    "sentence": "text", "transcript": "text", "transcription": "text", "label": "text",
    "lang": "language", "locale": "language",
}


@dataclass(frozen=True)
class Row:
    number: int  # 1-based: the Nth object of a JSON list, or the line number in JSON Lines
    audio_path: str  # absolute path of the audio file
    text: str  # the transcript, surrounding whitespace stripped
    language: str | None = None  # Whisper language code ("en", "zh"); None: not given in the manifest
    segments: list[dict] | None = None  # [{"start": s, "end": s, "text": str}], times in seconds
    duration: float | None = None  # seconds; set by validate_manifest, None from read_manifest
    # Row of a Hugging Face dataset that holds this row's audio (hf_data.py); None: audio_path is
    # a file. With an index, audio_path is what the dataset names the audio, for messages only.
    audio_index: int | None = None


@dataclass(frozen=True)
class Problem:
    number: int | None  # row number; None when the whole file is at fault
    audio_path: str | None  # the row's resolved audio path, when it has one
    reason: str  # what is wrong and what to do
    warning: bool = False  # a warning is printed but the row is still used


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Every row of a manifest, with absolute audio paths. Audio is not opened.

    Raises ManifestError when the file cannot be read or any row lacks a required key."""
    manifest, entries = load_entries(path)
    rows, problems = rows_from_entries(entries, manifest.parent)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ManifestError(f"{manifest}: {len(errors)} bad rows\n" + "\n".join(
            problem_line(p, manifest.parent) for p in errors))
    for p in problems:
        logger.warning("%s: %s", manifest, problem_line(p, manifest.parent).strip())
    return rows


# --- reading -------------------------------------------------------------------------------------

def load_entries(path: str | os.PathLike) -> tuple[Path, list[tuple[int, object]]]:
    """(manifest path, [(row number, parsed value)]). A JSON Lines line that does not parse is
    kept as a _BadLine so every other row is still checked. Whole-file problems raise ManifestError."""
    manifest = Path(path).expanduser().absolute()
    text = _read_text(manifest)
    start = text.lstrip()[:1]
    if not start:
        raise ManifestError(f"manifest {manifest} is empty: write a JSON list "
                            '([{"audio_path": ..., "text": ...}]) or JSON Lines (one object per line)')
    if manifest.suffix.lower() == ".jsonl" or start == "{":
        entries = _parse_json_lines(manifest, text)
    else:
        data = _parse_json(manifest, text)
        if not isinstance(data, list):
            raise _shape_error(manifest, data)
        entries = list(enumerate(data, start=1))
    if not entries:
        raise ManifestError(f"manifest {manifest} has no rows")
    return manifest, entries


def _read_text(manifest: Path) -> str:
    if not manifest.exists():
        raise ManifestError(f"manifest not found: {manifest} (check the path)")
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} is not a file")
    data = manifest.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: a byte-order mark (Windows Notepad) is accepted
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ManifestError(
            f"manifest {manifest} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
            "cannot be decoded; save the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)") from None


def _parse_json(manifest: Path, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {manifest} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}") from None


def _lines(text: str):
    """The lines of text one at a time ("\n" or "\r\n" ends), not a list of them all: a million
    lines held at once would take more memory than the text itself."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end].rstrip("\r")
        start = end + 1


class _BadLine(str):
    """A JSON Lines line that does not parse; its text is the parser's reason."""


def _parse_json_lines(manifest: Path, text: str) -> list[tuple[int, object]]:
    entries = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            entries.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            entries.append((number, _BadLine(f"{exc.msg} at column {exc.colno}")))
    if entries and all(isinstance(value, _BadLine) for _, value in entries):
        try:  # a pretty-printed object rather than one object per line?
            data = json.loads(text)
        except json.JSONDecodeError:
            number, reason = entries[0]
            raise ManifestError(f"manifest {manifest} is not JSON Lines: line {number}: {reason}") from None
        raise _shape_error(manifest, data)
    return entries


def _shape_error(manifest: Path, data: object) -> ManifestError:
    return ManifestError(
        f"manifest {manifest} holds {_json_type(data)}; it must be a JSON list of objects "
        '([{"audio_path": ..., "text": ...}]) or JSON Lines (one object per line)')


def _json_type(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names = {dict: "a JSON object", list: "a JSON list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


# --- checking rows -------------------------------------------------------------------------------

def rows_from_entries(entries, folder: Path) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    for number, value in entries:
        row, found = _parse_row(number, value, folder)
        problems.extend(found)
        if row is not None:
            rows.append(row)
    return rows, problems


def _parse_row(number: int, value: object, folder: Path) -> tuple[Row | None, list[Problem]]:
    if isinstance(value, _BadLine):
        return None, [Problem(number, None, f"line is not valid JSON: {value}")]
    if not isinstance(value, dict):
        return None, [Problem(number, None, f"row is {_json_type(value)}, not an object with "
                                            "audio_path and text")]
    raw_path = value.get("audio_path")
    path = None
    if isinstance(raw_path, str) and raw_path.strip():
        path = os.path.normpath(os.path.join(folder, os.path.expanduser(raw_path.strip())))
    errors = [_missing_key(key, value) for key in REQUIRED_KEYS if key not in value]
    if "audio_path" in value and path is None:
        errors.append(f"audio_path must be a non-empty string, got {json.dumps(raw_path, ensure_ascii=False)}")
    text = value.get("text")
    if "text" in value and not isinstance(text, str):
        errors.append(f"text must be a string, got {_json_type(text)}")
    elif isinstance(text, str) and not text.strip():
        errors.append("text is empty")
    language, reason = _language(value.get("language"))
    if reason:
        errors.append(reason)
    segments, reason = _segments(value.get("segments"))
    if reason:
        errors.append(reason)
    problems = [Problem(number, path, e) for e in errors]
    problems += [Problem(number, path, _unknown_key(key), warning=True) for key in value
                 if _is_unknown(key, value)]
    if errors:
        return None, problems
    return Row(number, path, text.strip(), language, segments), problems


def _missing_key(key: str, value: dict) -> str:
    aliases = [k for k in value if KEY_ALIASES.get(k) == key]
    if aliases:
        return f"missing key '{key}' (found '{aliases[0]}': rename it to '{key}')"
    return f"missing key '{key}'"


def _is_unknown(key: str, value: dict) -> bool:
    if key in REQUIRED_KEYS + OPTIONAL_KEYS:
        return False
    target = KEY_ALIASES.get(key)
    return not (target in REQUIRED_KEYS and target not in value)  # the missing-key error names it


def _unknown_key(key: str) -> str:
    close = [KEY_ALIASES[key]] if key in KEY_ALIASES else difflib.get_close_matches(
        key, REQUIRED_KEYS + OPTIONAL_KEYS, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{key}' is ignored{hint}"


def _language(value: object) -> tuple[str | None, str | None]:
    """(Whisper language code, error). Accepts a code ("en"), a name ("English") or a token ("<|en|>")."""
    if value is not None and not isinstance(value, str):
        return None, f"language must be a string such as \"en\", got {_json_type(value)}"
    return lookup_language(value)


def _segments(value: object) -> tuple[list[dict] | None, str | None]:
    """(segments with float times, error). Times must be numbers, start <= end, in order."""
    if value is None:
        return None, None
    if not isinstance(value, list):
        return None, f"segments must be a list of {{start, end, text}} objects, got {_json_type(value)}"
    segments, last_start = [], 0.0
    for i, seg in enumerate(value, start=1):
        if not (isinstance(seg, dict) and isinstance(seg.get("text"), str)
                and all(isinstance(seg.get(k), (int, float)) and not isinstance(seg.get(k), bool)
                        for k in ("start", "end"))):
            return None, f"segment {i} must be an object with numeric start and end and a string text"
        start, end = float(seg["start"]), float(seg["end"])
        if not 0 <= start <= end or start < last_start:
            return None, f"segment {i} has start {start:g} s and end {end:g} s: need 0 <= start <= end, in order"
        last_start = start
        segments.append({"start": start, "end": end, "text": seg["text"]})
    return segments, None


def problem_line(p: Problem, folder: Path) -> str:
    where = "file" if p.number is None else f"row {p.number}"
    if p.audio_path:
        shown = os.path.relpath(p.audio_path, folder)
        where += f" ({p.audio_path if shown.startswith('..') else shown})"
    return f"  {where}: {'warning: ' if p.warning else ''}{p.reason}"
