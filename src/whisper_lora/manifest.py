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

validate_manifest checks every row and returns a report instead of stopping at the first problem;
checked_rows is what training calls: the good rows, with the bad ones logged (or, strict, an error).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from . import audio
from .errors import AudioError, ManifestError, OptionsError
from .languages import lookup_language

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


@dataclass(frozen=True)
class Problem:
    number: int | None  # row number; None when the whole file is at fault
    audio_path: str | None  # the row's resolved audio path, when it has one
    reason: str  # what is wrong and what to do
    warning: bool = False  # a warning is printed but the row is still used


@dataclass
class ValidationReport:
    manifest: str  # absolute path of the manifest
    rows: int  # rows in the file: list entries, or non-blank lines of JSON Lines
    good_rows: list[Row]  # rows without errors, in file order, each with its duration
    problems: list[Problem]  # errors and warnings, file-level first, then by row number
    max_seconds: float | None  # the length limit that was checked

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def file_error(self) -> str | None:
        """Why the file could not be read at all, or None."""
        return next((p.reason for p in self.problems if p.number is None), None)

    @property
    def durations(self) -> list[float]:
        return [r.duration for r in self.good_rows if r.duration is not None]


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Every row of a manifest, with absolute audio paths. Audio is not opened.

    Raises ManifestError when the file cannot be read or any row lacks a required key."""
    manifest, entries = _load_entries(path)
    rows, problems = _rows_from_entries(entries, manifest.parent)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ManifestError(f"{manifest}: {len(errors)} bad rows\n" + "\n".join(
            _problem_line(p, manifest.parent) for p in errors))
    for p in problems:
        logger.warning("%s: %s", manifest, _problem_line(p, manifest.parent).strip())
    return rows


def validate_manifest(path: str | os.PathLike, max_seconds: float | None = audio.CHUNK_LENGTH,
                      decode: bool = True) -> ValidationReport:
    """Check every row: keys, text, language, duplicates, and that its audio exists, decodes and
    is at most max_seconds long (None: no limit).

    decode=True decodes each file in full (at its own rate, no resampling), which catches files
    whose header reads but whose data is damaged, and measures the exact length; training decodes
    every file anyway, so this finds the bad ones before hours are spent. decode=False reads only
    headers: much faster on large sets, but a damaged file then fails later, during training."""
    if max_seconds is not None and max_seconds <= 0:
        raise OptionsError(f"max_seconds must be positive, got {max_seconds}")
    manifest = Path(path).expanduser().absolute()
    try:
        manifest, entries = _load_entries(manifest)
    except ManifestError as exc:
        return ValidationReport(str(manifest), 0, [], [Problem(None, None, str(exc))], max_seconds)

    rows, problems = _rows_from_entries(entries, manifest.parent)
    checked, lengths = [], {}  # lengths: audio path -> seconds or AudioError, each file opened once
    for row in rows:
        if row.audio_path not in lengths:
            try:
                lengths[row.audio_path] = _audio_seconds(row.audio_path, max_seconds, decode)
            except AudioError as exc:
                lengths[row.audio_path] = exc
        seconds = lengths[row.audio_path]
        if isinstance(seconds, AudioError):
            problems.append(Problem(row.number, row.audio_path, _audio_reason(seconds, manifest.parent)))
            continue
        row_problems = _length_problems(row, seconds, max_seconds)
        problems.extend(row_problems)
        if not row_problems:
            checked.append(dataclasses.replace(row, duration=seconds))
    # Duplicates last, among rows that are otherwise good: a bad first copy must not hide a good one.
    good = _drop_duplicates(checked, problems)

    problems.sort(key=lambda p: p.number or 0)  # stable: a row's problems keep their order
    return ValidationReport(str(manifest), len(entries), good, problems, max_seconds)


def checked_rows(path: str | os.PathLike, max_seconds: float | None = audio.CHUNK_LENGTH,
                 strict: bool = False, decode: bool = True) -> list[Row]:
    """The rows training can use. Bad rows are dropped and logged with their reasons; in strict
    mode any bad row raises ManifestError listing all of them. No usable row at all always raises."""
    report = validate_manifest(path, max_seconds=max_seconds, decode=decode)
    if report.file_error:
        raise ManifestError(report.file_error)
    if strict and report.errors:
        raise ManifestError(format_report(report) + "\nstrict mode: fix or remove every row listed above")
    if not report.good_rows:
        raise ManifestError(format_report(report) + "\nno usable rows in this manifest")
    if report.problems:
        dropped = report.rows - len(report.good_rows)
        logger.warning("%s\n%s", format_report(report), f"dropped the {dropped} rows with errors" if dropped
                       else "no rows dropped")
    else:
        logger.info(format_summary(report))
    return report.good_rows


def format_report(report: ValidationReport) -> str:
    """The problems, one per line with row number, audio path and reason, then a summary."""
    folder = Path(report.manifest).parent
    lines = [f"{report.manifest}:"]
    lines += [_problem_line(p, folder) for p in report.problems] or ["  no problems found"]
    lines.append(format_summary(report))
    return "\n".join(lines)


def format_summary(report: ValidationReport) -> str:
    if report.file_error:
        return "the manifest could not be read, so no row was checked"
    n_errors = len({p.number for p in report.errors})
    text = (f"{report.rows} rows, {len(report.good_rows)} valid, {n_errors} with errors, "
            f"{len(report.warnings)} warning{'' if len(report.warnings) == 1 else 's'}")
    seconds = report.durations
    if seconds:
        total = sum(seconds)
        text += (f"; {total / 3600:.2f} hours ({total:.1f} s) of valid audio; duration min "
                 f"{min(seconds):.1f} s, median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    return text


# --- reading -------------------------------------------------------------------------------------

def _load_entries(path: str | os.PathLike) -> tuple[Path, list[tuple[int, object]]]:
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


class _BadLine(str):
    """A JSON Lines line that does not parse; its text is the parser's reason."""


def _parse_json_lines(manifest: Path, text: str) -> list[tuple[int, object]]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
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

def _rows_from_entries(entries, folder: Path) -> tuple[list[Row], list[Problem]]:
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


def _drop_duplicates(rows: list[Row], problems: list[Problem]) -> list[Row]:
    """The first row for each audio file; later ones become errors (a repeat, or a conflict)."""
    first: dict[str, Row] = {}
    kept = []
    for row in rows:
        seen = first.get(row.audio_path)
        if seen is None:
            first[row.audio_path] = row
            kept.append(row)
        elif seen.text == row.text:
            problems.append(Problem(row.number, row.audio_path, f"duplicate of row {seen.number} "
                                                                "(same audio and text)"))
        else:
            problems.append(Problem(row.number, row.audio_path, f"same audio as row {seen.number} but a "
                                                                "different text: keep one transcript"))
    return kept


def _audio_seconds(path: str, max_seconds: float | None, decode: bool) -> float:
    seconds = audio.audio_duration(path)
    # A file far over the limit is reported from its header alone: decoding an hour of audio
    # just to say it is too long would cost minutes and gigabytes.
    if decode and (max_seconds is None or seconds <= 2 * max_seconds):
        samples, rate = audio.decode(path)
        seconds = len(samples) / rate
    return seconds


def _audio_reason(exc: AudioError, folder: Path) -> str:
    reason = getattr(exc, "reason", str(exc))
    if reason == "audio file not found":
        reason += f" (relative paths resolve against the manifest's folder, {folder})"
    return reason


def _length_problems(row: Row, seconds: float, max_seconds: float | None) -> list[Problem]:
    problems = []
    if max_seconds is not None and seconds > max_seconds:
        problems.append(Problem(row.number, row.audio_path,
                                f"audio is {seconds:.1f} s long; Whisper takes at most {max_seconds:g} s "
                                "per clip: split it into shorter clips"))
    late = [s for s in row.segments or [] if s["end"] > seconds + 0.05]  # 50 ms: rounding of times
    if late:
        problems.append(Problem(row.number, row.audio_path, f"a segment ends at {late[0]['end']:g} s, "
                                                            f"after the audio's end ({seconds:.2f} s)"))
    return problems


def _problem_line(p: Problem, folder: Path) -> str:
    where = "file" if p.number is None else f"row {p.number}"
    if p.audio_path:
        shown = os.path.relpath(p.audio_path, folder)
        where += f" ({p.audio_path if shown.startswith('..') else shown})"
    return f"  {where}: {'warning: ' if p.warning else ''}{p.reason}"
