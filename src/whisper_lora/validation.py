"""Check a manifest before training: every row's keys and text (manifest.py), and that its audio
exists, decodes and fits Whisper's window, all rows at once.

validate_manifest returns a report instead of stopping at the first problem; checked_rows is what
training calls: the good rows, with the bad ones logged (or, strict, an error).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from . import audio
from .errors import AudioError, ManifestError, OptionsError
from .manifest import Problem, Row, load_entries, problem_line, rows_from_entries

logger = logging.getLogger(__name__)


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
        manifest, entries = load_entries(manifest)
    except ManifestError as exc:
        return ValidationReport(str(manifest), 0, [], [Problem(None, None, str(exc))], max_seconds)

    rows, problems = rows_from_entries(entries, manifest.parent)
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
    lines += [problem_line(p, folder) for p in report.problems] or ["  no problems found"]
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
