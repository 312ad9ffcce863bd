"""Check a manifest before training: every row's keys and text (manifest.py), and that its audio
exists, decodes and fits Whisper's window, all rows at once.

validate_manifest returns a report instead of stopping at the first problem; checked_rows is what
training calls: the good rows, with the bad ones logged (or, strict, an error).

One module for one job, the manifest's checks: the rows' keys and text, their audio and the
report, all read in one pass (over 300 lines).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .. import audio
from ..errors import AudioError, ManifestError, OptionsError
from ..fileio import write_text
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
                      decode: bool = True, cache: bool = True) -> ValidationReport:
    """Check every row: keys, text, language, duplicates, and that its audio exists, decodes and
    is at most max_seconds long (None: no limit).

    decode=True decodes each file in full (at its own rate, no resampling), which catches files
    whose header reads but whose data is damaged, and measures the exact length; training decodes
    every file anyway, so this finds the bad ones before hours are spent. decode=False reads only
    headers: much faster on large sets, but a damaged file then fails later, during training.
    cache=True keeps each file's length in a cache (DurationCache), so a file that has not changed
    is probed or decoded once, not on every validate and every training start."""
    if max_seconds is not None and max_seconds <= 0:
        raise OptionsError(f"max_seconds must be positive, got {max_seconds}")
    manifest = Path(path).expanduser().absolute()
    try:
        manifest, entries = load_entries(manifest)
    except ManifestError as exc:
        return ValidationReport(str(manifest), 0, [], [Problem(None, None, str(exc))], max_seconds)
    n_entries = len(entries)
    # Each parsed line, and then each row, is let go as soon as the next stage has its own: on a
    # million rows, holding all three stages at once would take three times the memory.
    rows, problems = rows_from_entries(_drain(entries), manifest.parent)
    durations = DurationCache.for_manifest(manifest) if cache and n_entries >= CACHE_MIN_ROWS else DurationCache(None)
    report = check_rows(str(manifest), n_entries, _drain(rows), problems, max_seconds,
                        FileProbe(decode, durations, max_seconds))
    durations.save()
    return report


def _drain(items: list) -> Iterator:
    """The items of a list, each removed from it (set to None) as it is handed out."""
    for i in range(len(items)):
        item, items[i] = items[i], None
        yield item


def check_rows(name: str, n_rows: int, rows: Iterable[Row], problems: list[Problem], max_seconds: float | None,
               probe) -> ValidationReport:
    """The audio checks of validate_manifest on rows read from anywhere (a manifest, prepare's
    output, a Hugging Face dataset): probe(row) gives the audio's length in seconds or raises
    AudioError. Rows that name the same audio are probed once."""
    checked, lengths = [], {}  # audio -> seconds or AudioError
    for row in rows:
        key = row.audio_path if row.audio_index is None else row.audio_index
        if key not in lengths:
            try:
                lengths[key] = probe(row)
            except AudioError as exc:
                lengths[key] = exc
        seconds = lengths[key]
        if isinstance(seconds, AudioError):
            problems.append(Problem(row.number, row.audio_path, _audio_reason(seconds, Path(name).parent)))
            continue
        row_problems = _length_problems(row, seconds, max_seconds)
        problems.extend(row_problems)
        if not row_problems:
            # Not dataclasses.replace: at a million rows its generic path costs seconds.
            checked.append(Row(row.number, row.audio_path, row.text, row.language, row.segments, seconds,
                               row.audio_index))
    # Duplicates last, among rows that are otherwise good: a bad first copy must not hide a good one.
    good = _drop_duplicates(checked, problems)
    problems.sort(key=lambda p: p.number or 0)  # stable: a row's problems keep their order
    return ValidationReport(name, n_rows, good, problems, max_seconds)


class FileProbe:
    """probe(row) for rows whose audio is a file: its length from the header or, decode=True, by
    decoding it whole; through a DurationCache, so an unchanged file is measured once."""

    def __init__(self, decode: bool, durations: DurationCache | None = None, max_seconds: float | None = None):
        self.decode = decode
        self.max_seconds = max_seconds  # files over twice this are measured from the header only
        self.durations = durations or DurationCache(None)

    def __call__(self, row: Row) -> float:
        try:
            stat = os.stat(row.audio_path)
        except OSError:
            stat = None  # audio.audio_duration below names the problem
        key = _file_key(stat) if stat is not None else None
        known = self.durations.get(key, self.decode)
        if known is not None:
            return known
        seconds, decoded = _audio_seconds(row.audio_path, self.max_seconds, self.decode)
        if key is not None:
            self.durations.put(key, seconds, decoded)
        return seconds


# Manifests with fewer rows are measured in a moment; a cache file for each would only clutter
# the cache folder (every test run, every small experiment).
CACHE_MIN_ROWS = 1000


class DurationCache:
    """Audio lengths by file identity (device, inode, size, modification time), kept in a JSON file
    in the user's cache folder, one per manifest. A file that changes gets a new key, so a stale
    length is never used; hard links to one file share one entry. An entry made by decoding also
    serves header-only checks, not the other way round."""

    VERSION = 1

    def __init__(self, path: Path | None):
        self.path = path  # None: kept in memory only
        self.entries: dict[str, list] = {}  # key -> [seconds, decoded]
        self.changed = False
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == self.VERSION:
                    self.entries = data["durations"]
            except (OSError, ValueError, KeyError, AttributeError):
                log_cache_problem(path)  # a damaged cache is rebuilt, never trusted

    @classmethod
    def for_manifest(cls, manifest: Path) -> DurationCache:
        key = hashlib.sha1(str(manifest).encode("utf-8")).hexdigest()[:16]
        return cls(cache_folder() / "durations" / f"{manifest.stem[:40]}-{key}.json")

    def get(self, key: str | None, decoded: bool) -> float | None:
        entry = self.entries.get(key) if key else None
        if entry is None or (decoded and not entry[1]):
            return None
        return entry[0]

    def put(self, key: str, seconds: float, decoded: bool) -> None:
        self.entries[key] = [seconds, decoded]
        self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        try:
            write_text(self.path, json.dumps({"version": self.VERSION, "durations": self.entries},
                                             separators=(",", ":")))
            self.changed = False
        except OSError as exc:  # a read-only home must not stop validation; it only costs time
            logger.info("could not write the duration cache %s: %s", self.path, exc)


def cache_folder() -> Path:
    """~/.cache/whisper-lora, or $WHISPER_LORA_CACHE (the same folder converted models go to)."""
    env = os.environ.get("WHISPER_LORA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "whisper-lora"


def log_cache_problem(path: Path) -> None:
    logger.info("ignoring the unreadable duration cache %s (it is rebuilt)", path)


def _file_key(stat: os.stat_result) -> str:
    return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


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
    """Rows whose audio file has one transcript. A row repeating an earlier row's audio and text is
    kept (repeating rows is how a manifest oversamples a clip) and counted in one warning; a row
    giving an earlier row's audio another text is an error: which transcript is right is the
    user's to say."""
    first: dict[str, Row] = {}
    kept, repeats = [], []
    for row in rows:
        # A dataset's rows hold their own audio bytes: two rows are never the same file.
        key = row.audio_path if row.audio_index is None else (row.audio_path, row.audio_index)
        seen = first.get(key)
        if seen is None:
            first[key] = row
            kept.append(row)
        elif seen.text == row.text:
            kept.append(row)
            repeats.append((row, seen))
        else:
            problems.append(Problem(row.number, row.audio_path, f"same audio as row {seen.number} but a "
                                                                "different text: keep one transcript"))
    if repeats:
        row, seen = repeats[0]
        problems.append(Problem(row.number, row.audio_path, f"{len(repeats)} rows repeat an earlier row's audio and text (first: row "
                                            f"{row.number} repeats row {seen.number}); they are trained on again, "
                                            "as oversampling", warning=True))
    return kept


def _audio_seconds(path: str, max_seconds: float | None, decode: bool) -> tuple[float, bool]:
    """(length in seconds, whether the file was decoded whole to measure it)."""
    seconds = audio.audio_duration(path)
    # A file far over the limit is reported from its header alone: decoding an hour of audio
    # just to say it is too long would cost minutes and gigabytes.
    if decode and (max_seconds is None or seconds <= 2 * max_seconds):
        samples, rate = audio.decode(path)
        return len(samples) / rate, True
    return seconds, False


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
