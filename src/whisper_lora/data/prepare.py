"""`prepare(options) -> PrepareResult`: the data users have, turned into a training manifest.

Inputs, told apart by what they are:
- a long recording with SRT/WebVTT subtitles (`x.wav` beside `x.srt`, or --subtitles for one
  file): cut between cues into clips of at most 30 s, each with its text and its segments (times
  relative to the clip), ready for `train --timestamps` (cue_clips.py plans the cuts);
- a folder: each audio file with `x.srt`/`x.vtt` beside it is such a recording, each with `x.txt`
  is one clip whose transcript is that text;
- a table: Common Voice `.tsv`, or `.csv`/`.tsv` with a path and a sentence column (names as
  Common Voice, NeMo or HF write them); Common Voice's `clips/` folder is found on its own;
- a JSON/JSONL manifest of recordings: rows with audio_path and subtitles (or text).

The output folder gets manifest.jsonl (one row per clip or file), clips/ (the cut audio, 16 kHz
WAV) and report.txt (every cue or row that needed handling, by number and time). Each row is
checked as training checks it (validation.check_rows) before it is written, and the bad ones are
left out with their reasons, so the manifest trains as it is. Everything is written atomically:
clips/ is built aside and swapped in whole, and an earlier manifest is replaced only with --overwrite.

One module for one job, turning what a user has into a manifest: the three inputs share the
clip writing, the checks and the atomic swap (over 300 lines); reading subtitles and planning
cue clips are apart (subtitles.py, cue_clips.py).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from .. import audio
from .cue_clips import ClipPlan, plan_clips
from ..errors import ManifestError, OptionsError
from ..fileio import atomic_path, replace_folder, write_text
from ..languages import lookup_language
from .manifest import Problem, load_entries, problem_line, rows_from_entries
from .subtitles import SUBTITLE_SUFFIXES, format_time, read_subtitles
from .validation import CACHE_MIN_ROWS, DurationCache, FileProbe, check_rows

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
CLIPS_FOLDER = "clips"
REPORT_NAME = "report.txt"
TABLE_SUFFIXES = (".csv", ".tsv")
AUDIO_SUFFIXES = tuple(sorted(audio.SOUNDFILE_SUFFIXES | {".mp3", ".m4a", ".aac", ".opus", ".webm", ".mp4", ".wma"}))
# Column names for the audio and the transcript, in the order they are tried (Common Voice,
# this project, NeMo, HF datasets and common hand-made tables).
AUDIO_COLUMNS = ("audio_path", "path", "audio", "audio_filepath", "file", "file_name", "filename", "wav")
TEXT_COLUMNS = ("text", "sentence", "transcript", "transcription", "normalized_text", "raw_transcription")
LANGUAGE_COLUMNS = ("language", "locale", "lang")


@dataclass(frozen=True)
class PrepareOptions:
    # Recordings, folders, tables (.csv/.tsv) or manifests of recordings (.json/.jsonl).
    inputs: tuple[str, ...]
    # Where manifest.jsonl, clips/ and report.txt go.
    output_dir: str
    # Subtitles of the one recording given as input (otherwise x.srt / x.vtt beside x.wav).
    subtitles: str | None = None
    # Longest clip, in seconds: Whisper's 30-s window, or less.
    max_seconds: float = float(audio.CHUNK_LENGTH)
    # Language written on every row (a row's own, e.g. Common Voice's locale, wins).
    language: str | None = None
    # Replace the manifest of an earlier prepare in output_dir.
    overwrite: bool = False
    # Check audio from file headers only instead of decoding every file (faster; misses damaged data).
    quick: bool = False

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(os.fspath(i) for i in self.inputs))
        if not self.inputs:
            raise OptionsError("prepare: give at least one recording, folder, table or manifest")
        if not 0 < self.max_seconds <= audio.CHUNK_LENGTH:
            raise OptionsError(f"--max_seconds {self.max_seconds:g}: must be above 0 and at most "
                               f"{audio.CHUNK_LENGTH} (Whisper's window)")
        if self.subtitles is not None and len(self.inputs) != 1:
            raise OptionsError("--subtitles goes with exactly one recording; for several, put x.srt beside "
                               "each x.wav and give the folder")
        if self.language is not None:
            code, reason = lookup_language(self.language)
            if reason:
                raise OptionsError(f"--language {self.language}: {reason}")
            object.__setattr__(self, "language", code)


@dataclass
class PrepareResult:
    manifest: Path  # the manifest written
    rows: int  # rows in it
    clips: int  # of them, clips cut from recordings
    seconds: float  # audio in the manifest
    notes: list[str] = field(default_factory=list)  # every cue or row that needed handling, one line each

    def summary(self) -> str:
        return (f"{self.manifest}: {self.rows} rows ({self.clips} clips cut from recordings), "
                f"{self.seconds / 3600:.2f} hours; {len(self.notes)} notes in {self.manifest.parent / REPORT_NAME}")


@dataclass
class _Candidate:
    row: dict  # a manifest row, audio_path absolute
    origin: str  # where it came from, for the report: "talk.srt cues 3-7", "train.tsv line 12"


def prepare(options: PrepareOptions) -> PrepareResult:
    output_dir = Path(options.output_dir).expanduser().absolute()
    manifest = output_dir / MANIFEST_NAME
    if manifest.exists() and not options.overwrite:
        raise OptionsError(f"--output_dir {output_dir} already holds {MANIFEST_NAME} from an earlier prepare: "
                           "pass --overwrite to replace it, or choose another --output_dir")
    recordings, candidates, notes = _gather(options)  # every input is read before any audio is cut
    output_dir.mkdir(parents=True, exist_ok=True)
    clips_tmp = Path(tempfile.mkdtemp(prefix=f".{CLIPS_FOLDER}-", dir=output_dir))
    try:
        for recording in recordings:
            cut, cut_notes = _cut_recording(recording, clips_tmp, output_dir / CLIPS_FOLDER, options)
            candidates += cut
            notes += cut_notes
        rows, seconds = _checked(candidates, manifest, options, clips_tmp, notes)
        if not rows:
            raise ManifestError("prepare: no usable rows\n" + "\n".join(notes[:20]))
        n_clips = sum(1 for r in rows if r["audio_path"].startswith(CLIPS_FOLDER + "/"))
        if n_clips or (output_dir / CLIPS_FOLDER).exists():
            replace_folder(clips_tmp, output_dir / CLIPS_FOLDER)
        write_text(output_dir / REPORT_NAME, "\n".join(notes) + ("\n" if notes else "no problems found\n"))
        write_text(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    finally:
        shutil.rmtree(clips_tmp, ignore_errors=True)
    result = PrepareResult(manifest, len(rows), n_clips, seconds, notes)
    log.info(result.summary())
    return result


# --- inputs --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Recording:
    audio: Path
    subtitles: Path
    language: str | None


def _gather(options: PrepareOptions) -> tuple[list[_Recording], list[_Candidate], list[str]]:
    recordings, candidates, notes = [], [], []
    for name in options.inputs:
        path = Path(name).expanduser().absolute()
        suffix = path.suffix.lower()
        if path.is_dir():
            found, pairs, missing = _scan_folder(path, options.language)
            recordings += found
            candidates += pairs
            notes += missing
        elif not path.is_file():
            raise OptionsError(f"prepare: {path} not found")
        elif suffix in TABLE_SUFFIXES:
            candidates += _read_table(path, options.language)
        elif suffix in (".json", ".jsonl"):
            found, pairs = _read_recordings_manifest(path, options.language)
            recordings += found
            candidates += pairs
        elif suffix in AUDIO_SUFFIXES:
            subtitles = Path(options.subtitles).expanduser().absolute() if options.subtitles else _beside(path)
            if subtitles is None or not subtitles.is_file():
                raise OptionsError(f"prepare: {path} has no subtitles: put {path.stem}.srt or {path.stem}.vtt "
                                   "beside it, or pass --subtitles FILE")
            recordings.append(_Recording(path, subtitles, options.language))
        else:
            raise OptionsError(f"prepare: {path}: not a folder, audio file ({', '.join(AUDIO_SUFFIXES)}), "
                               "table (.csv, .tsv) or manifest (.json, .jsonl)")
    return recordings, candidates, notes


def _beside(audio_path: Path) -> Path | None:
    return next((p for p in (audio_path.with_suffix(s) for s in SUBTITLE_SUFFIXES) if p.is_file()), None)


def _scan_folder(folder: Path, language: str | None) -> tuple[list[_Recording], list[_Candidate], list[str]]:
    """x.wav + x.srt/x.vtt: a recording to cut; x.wav + x.txt: one clip; anything else is noted."""
    recordings, pairs, notes = [], [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        subtitles, text_file = _beside(path), path.with_suffix(".txt")
        if subtitles is not None:
            recordings.append(_Recording(path, subtitles, language))
        elif text_file.is_file():
            try:
                text = text_file.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError:
                notes.append(f"{text_file}: not UTF-8 text: skipped (save it as UTF-8)")
                continue
            row = {"audio_path": str(path), "text": " ".join(text.split())}
            pairs.append(_Candidate(_with_language(row, language), str(text_file.relative_to(folder))))
        else:
            notes.append(f"{path}: no transcript beside it ({path.stem}.txt, .srt or .vtt): skipped")
    if not recordings and not pairs:
        raise OptionsError(f"prepare: folder {folder} holds no audio file with a transcript beside it "
                           "(x.wav with x.txt, x.srt or x.vtt)")
    return recordings, pairs, notes


def _read_table(path: Path, language: str | None) -> list[_Candidate]:
    """Common Voice .tsv, or any .csv/.tsv with a header naming a path and a sentence column."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"table {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    lines = text.splitlines()
    if not lines:
        raise ManifestError(f"table {path} is empty")
    if path.suffix.lower() == ".tsv":  # Common Voice writes quotes inside sentences unescaped
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, dialect=csv.Sniffer().sniff(lines[0], delimiters=",;\t|"))
    header = [h.strip() for h in next(reader)]
    audio_col, text_col = _column(header, AUDIO_COLUMNS), _column(header, TEXT_COLUMNS)
    if audio_col is None or text_col is None:
        raise ManifestError(f"table {path}: its header ({', '.join(header[:12])}) needs an audio column "
                            f"({' or '.join(AUDIO_COLUMNS[:3])}) and a transcript column "
                            f"({' or '.join(TEXT_COLUMNS[:3])})")
    lang_col = _column(header, LANGUAGE_COLUMNS)
    folder, clips = path.parent, path.parent / "clips"  # Common Voice: clips/ beside the .tsv files
    out = []
    for values in reader:
        number = reader.line_num
        if not any(v.strip() for v in values):
            continue
        cells = dict(zip(header, values))
        raw = (cells.get(audio_col) or "").strip()
        audio_path = folder / raw
        if raw and not audio_path.exists() and (clips / raw).exists():
            audio_path = clips / raw
        row = {"audio_path": str(audio_path) if raw else "", "text": (cells.get(text_col) or "").strip()}
        lang = (cells.get(lang_col) or "").strip() if lang_col else ""
        out.append(_Candidate(_with_language(row, _table_language(lang) or language), f"{path.name} line {number}"))
    return out


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def _table_language(value: str) -> str | None:
    """Common Voice locales (en, zh-CN, sv-SE) as Whisper codes; "" or unknown: None."""
    for candidate in (value, value.split("-")[0]):
        code, reason = lookup_language(candidate) if candidate else (None, "none")
        if not reason and code:
            return code
    return None


def _read_recordings_manifest(path: Path, language: str | None) -> tuple[list[_Recording], list[_Candidate]]:
    """JSON/JSONL rows of recordings: {"audio_path", "subtitles"} rows are cut, others pass through."""
    manifest, entries = load_entries(path)
    recordings, plain, problems = [], [], []
    for number, value in entries:
        if isinstance(value, dict) and "subtitles" in value:
            audio_path = manifest.parent / str(value.get("audio_path", ""))
            subtitles = manifest.parent / str(value["subtitles"])
            if not audio_path.is_file() or not subtitles.is_file():
                problems.append(f"  row {number}: audio_path or subtitles not found ({audio_path}, {subtitles})")
                continue
            code, _ = lookup_language(value.get("language")) if value.get("language") else (None, None)
            recordings.append(_Recording(audio_path, subtitles, code or language))
        else:
            plain.append((number, value))
    if problems:
        raise ManifestError(f"manifest {manifest}:\n" + "\n".join(problems))
    rows, row_problems = rows_from_entries(plain, manifest.parent)
    if [p for p in row_problems if not p.warning]:
        raise ManifestError(f"manifest {manifest}:\n" + "\n".join(problem_line(p, manifest.parent)
                                                                for p in row_problems if not p.warning))
    candidates = [_Candidate(_with_language({"audio_path": r.audio_path, "text": r.text,
                                             **({"segments": r.segments} if r.segments else {})},
                                            r.language or language), f"{manifest.name} row {r.number}")
                  for r in rows]
    return recordings, candidates


def _with_language(row: dict, language: str | None) -> dict:
    return {**row, "language": language} if language else row


# --- cutting -------------------------------------------------------------------------------------

def _cut_recording(recording: _Recording, tmp: Path, clips: Path,
                   options: PrepareOptions) -> tuple[list[_Candidate], list[str]]:
    """Cut one recording into clips (WAV, 16 kHz) in tmp; rows name them as they will be, in clips/."""
    cues, problems = read_subtitles(recording.subtitles)
    samples = audio.load_audio(recording.audio)
    duration = len(samples) / audio.SAMPLE_RATE
    plans, cue_notes = plan_clips(cues, duration, options.max_seconds)
    name = recording.subtitles.name
    notes = [f"{name}: line {p.line}: {p.reason}: skipped" for p in problems]
    notes += [f"{name}: cue {n.cue.number} ({format_time(n.cue.start)} --> {format_time(n.cue.end)}): {n.reason}"
              for n in cue_notes]
    stem = _unique_stem(recording.audio, tmp)
    out = []
    for k, plan in enumerate(plans, start=1):
        file_name = f"{stem}_{k:04d}.wav"
        _write_clip(samples, plan, tmp / file_name)
        row = {"audio_path": str(clips / file_name), "text": plan.text, "segments": plan.segments}
        cue_span = f"{plan.cues[0]}" if len(plan.cues) == 1 else f"{plan.cues[0]}-{plan.cues[-1]}"
        out.append(_Candidate(_with_language(row, recording.language), f"{name} cues {cue_span}"))
    log.info("%s: %d cues -> %d clips", recording.audio, len(cues), len(plans))
    return out, notes


def _unique_stem(path: Path, tmp: Path) -> str:
    stem, n = path.stem, 1
    while (tmp / f"{stem}_0001.wav").exists():  # two recordings named alike, in different folders
        n += 1
        stem = f"{path.stem}-{n}"
    return stem


def _write_clip(samples: np.ndarray, plan: ClipPlan, path: Path) -> None:
    start, end = round(plan.start * audio.SAMPLE_RATE), round(plan.end * audio.SAMPLE_RATE)
    with atomic_path(path) as tmp:
        soundfile.write(tmp, samples[start:end], audio.SAMPLE_RATE, subtype="PCM_16")


# --- checking ------------------------------------------------------------------------------------

def _checked(candidates: list[_Candidate], manifest: Path, options: PrepareOptions, clips_tmp: Path,
             notes: list[str]) -> tuple[list[dict], float]:
    """The rows that pass training's checks, paths as the manifest will hold them; the others are
    noted with their origin. Clips are checked where they are now (clips_tmp)."""
    folder = manifest.parent
    clips = folder / CLIPS_FOLDER
    entries = []
    for number, c in enumerate(candidates, start=1):
        path = Path(c.row["audio_path"]) if c.row["audio_path"] else None
        checked_path = clips_tmp / path.name if path is not None and path.parent == clips else path
        entries.append((number, {**c.row, "audio_path": str(checked_path) if checked_path else ""}))
    rows, problems = rows_from_entries(entries, folder)
    # The cache is the output manifest's, so training on it later finds every length measured.
    durations = DurationCache.for_manifest(manifest) if len(entries) >= CACHE_MIN_ROWS else DurationCache(None)
    report = check_rows(str(manifest), len(entries), rows, problems,
                        options.max_seconds, FileProbe(not options.quick, durations, options.max_seconds))
    durations.save()
    for p in report.problems:
        notes.append(_problem_note(p, candidates[p.number - 1].origin))
    out = []
    for row in report.good_rows:
        c = candidates[row.number - 1]
        out.append({**c.row, "audio_path": _manifest_path(Path(c.row["audio_path"]), folder)})
    return out, sum(r.duration or 0.0 for r in report.good_rows)


def _problem_note(p: Problem, origin: str) -> str:
    return f"{origin}: {'warning: ' if p.warning else ''}{p.reason}{'' if p.warning else ': left out'}"


def _manifest_path(path: Path, folder: Path) -> str:
    """Relative inside the output folder (it can move as a whole), absolute outside it."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)
