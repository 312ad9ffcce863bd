"""Output formats: one small writer class per format, chosen by the output file's extension.

Every writer receives results one at a time, as each file finishes, and keeps its output file
complete and valid on disk at all times (write a temporary file, then os.replace); the file is
rewritten after each result (throttled to every FLUSH_SECONDS beyond EAGER_RESULTS results) and at
the end, also after an interruption, so an interrupted run keeps what was done. Formats:

  .json  {"model": ..., "backend": ..., "task": ..., "results": [FileResult.to_dict(), ...]}
  .txt   the transcript; with several files, each preceded by a "### path" line
  .tsv   one table for all files: path, start, end (seconds), text; one row per segment (with
         word timestamps: path, start, end, word, probability; one row per word)
  .srt / .vtt  subtitles of one file; with several input files, one subtitle file per input
         inside a folder named after the output file (subs.srt -> subs/NAME.srt); with word
         timestamps, VTT cues carry each word's start time inline (<00:00:01.240>word), as
         players use for karaoke-style highlighting, and every cue's times follow its words
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import OptionsError
from ..fileio import write_text
from .results import FileResult

FORMATS = ("json", "txt", "tsv", "srt", "vtt")
EAGER_RESULTS = 1000  # up to this many results, the file is rewritten after every one (cheap: ~100 kB)
FLUSH_SECONDS = 2.0  # beyond that, at most this often (and at the end)


def format_timestamp(seconds: float, decimal_marker: str = ".", always_hours: bool = False) -> str:
    """3725.5 -> '01:02:05.500'; SRT uses ',' as the decimal marker and always shows hours."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def format_for(path: str | os.PathLike, output_format: str | None = None) -> str:
    """The format named by --output_format, else by the output file's extension."""
    fmt = (output_format or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise OptionsError(
            f"--output_file {path}: cannot tell the format from the extension {Path(path).suffix!r}; "
            f"use one of {', '.join('.' + f for f in FORMATS)} or pass --output_format {{{','.join(FORMATS)}}}")
    return fmt


class Writer:
    """Base: add(result) after each file, close() at the end (also after an interruption).

    The whole file is rewritten (atomically) after each of the first EAGER_RESULTS results, then
    at most every FLUSH_SECONDS and at close, so a 100,000-file list does not rewrite a growing
    file 100,000 times."""

    def __init__(self, path: str | os.PathLike, n_files: int, meta: dict | None = None):
        self.path = Path(path)
        self.n_files = n_files  # how many inputs the run has: decides single- vs multi-file layout
        self.meta = dict(meta or {})  # run facts (model, backend, task) for formats that have room
        self.results: list[FileResult] = []
        self._last_flush = 0.0

    def add(self, result: FileResult) -> None:
        self.results.append(result)
        if len(self.results) <= EAGER_RESULTS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.write()

    def close(self) -> None:
        self.write()

    def write(self) -> None:
        write_text(self.path, self.render())
        self._last_flush = time.monotonic()

    def render(self) -> str:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JsonWriter(Writer):
    def render(self) -> str:
        doc = {**self.meta, "results": [r.to_dict() for r in self.results]}
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


class TxtWriter(Writer):
    def render(self) -> str:
        if self.n_files == 1:
            return "".join(_txt_body(r) for r in self.results)
        return "".join(f"### {r.path}\n{_txt_body(r)}" for r in self.results)


def _txt_body(result: FileResult) -> str:
    return f"ERROR: {result.error}\n" if result.error else f"{result.text}\n"


class TsvWriter(Writer):
    def render(self) -> str:
        if any(s.words for r in self.results for s in r.segments):
            rows = ["path\tstart\tend\tword\tprobability"]
            rows += [f"{_tsv(r.path)}\t{w.start:.3f}\t{w.end:.3f}\t{_tsv(w.word.strip())}\t{w.probability:.4f}"
                     for r in self.results for s in r.segments for w in s.words]
            return "\n".join(rows) + "\n"
        rows = ["path\tstart\tend\ttext"]
        for r in self.results:
            for s in r.segments:
                rows.append(f"{_tsv(r.path)}\t{s.start:.3f}\t{s.end:.3f}\t{_tsv(s.text)}")
        return "\n".join(rows) + "\n"


def _tsv(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


class SubtitleWriter(Writer):
    """SRT or VTT: one subtitle file per input file; failed files get none."""

    suffix = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._names: set[str] = set()

    def add(self, result: FileResult) -> None:
        self.results.append(result)
        if result.ok:
            write_text(self.target_for(result), self.render_one(result))

    def close(self) -> None:
        pass  # each file was written when it finished

    def target_for(self, result: FileResult) -> Path:
        if self.n_files == 1:
            return self.path
        folder = self.path.with_suffix("")
        name = Path(result.path).stem or "audio"
        candidate, n = name, 1
        while candidate in self._names:  # same stem from two folders: keep both
            n += 1
            candidate = f"{name}-{n}"
        self._names.add(candidate)
        return folder / f"{candidate}{self.suffix}"

    def render_one(self, result: FileResult) -> str:
        raise NotImplementedError


class SrtWriter(SubtitleWriter):
    suffix = ".srt"

    def render_one(self, result: FileResult) -> str:
        return srt_text(result)


class VttWriter(SubtitleWriter):
    suffix = ".vtt"

    def render_one(self, result: FileResult) -> str:
        return vtt_text(result)


def srt_text(result: FileResult) -> str:
    """One file's segments as SRT subtitles."""
    blocks = []
    for i, s in enumerate(_cues(result), start=1):
        start = format_timestamp(s.start, ",", always_hours=True)
        end = format_timestamp(s.end, ",", always_hours=True)
        blocks.append(f"{i}\n{start} --> {end}\n{s.text}\n")
    return "\n".join(blocks)


def vtt_text(result: FileResult) -> str:
    """One file's segments as WebVTT subtitles."""
    blocks = ["WEBVTT\n"]
    for s in _cues(result):
        blocks.append(f"{format_timestamp(s.start, always_hours=True)} --> "
                      f"{format_timestamp(s.end, always_hours=True)}\n{_vtt_cue_text(s)}\n")
    return "\n".join(blocks)


def _vtt_cue_text(seg) -> str:
    """The cue's text; with words, each word after the first preceded by its start time, which
    WebVTT allows inside a cue (strictly between the cue's start and end)."""
    if not seg.words:
        return _vtt_text(seg.text)
    out = ""
    for i, w in enumerate(seg.words):
        word = _vtt_text(w.word if i else w.word.lstrip())
        if i and seg.start < w.start < seg.end:
            out += f"<{format_timestamp(w.start, always_hours=True)}>"
        out += word
    return out


def _vtt_text(text: str) -> str:
    # "-->" would end the cue timing line's meaning; & and < start entities and tags in VTT.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("-->", "->")


def _cues(result: FileResult):
    """Segments worth a subtitle: non-empty text, end after start (a cue of zero length is invalid)."""
    for s in result.segments:
        if s.text:
            yield s if s.end > s.start else type(s)(s.start, s.start + 0.001, s.text, s.words)


WRITERS = {"json": JsonWriter, "txt": TxtWriter, "tsv": TsvWriter, "srt": SrtWriter, "vtt": VttWriter}


def open_writer(path: str | os.PathLike, n_files: int, output_format: str | None = None,
                meta: dict | None = None) -> Writer:
    """The writer for path's format (or output_format); meta (model, backend, task) goes into JSON."""
    return WRITERS[format_for(path, output_format)](path, n_files, meta=meta)
