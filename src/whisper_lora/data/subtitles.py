"""Read SRT and WebVTT subtitle files into cues: number, start, end (seconds) and plain text.

Only reading lives here; prepare.py decides what a cue becomes. Both formats are read leniently,
as subtitle files in the wild are hand-edited: a byte-order mark, CRLF line ends, a missing
blank line at the end, cue numbers out of order, "," or "." before the milliseconds and hours
left out (MM:SS.mmm) are all accepted. Markup is dropped from the text (<i>, <b>, <font ...>,
WebVTT's <v Speaker>, <c.class>, karaoke times <00:01.000>, ASS overrides {\\an8}), because
Whisper's targets are plain words. A block whose time line cannot be read is a Problem naming its
line number, and the other cues are still returned.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError

SUBTITLE_SUFFIXES = (".srt", ".vtt")

# 00:01:02,345 or 01:02.345 (hours optional, as WebVTT allows); SRT writes ",", VTT ".".
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIME_LINE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # HTML-like tags and ASS/SSA override blocks


@dataclass(frozen=True)
class Cue:
    number: int  # the SRT cue number as written; in WebVTT, the cue's position in the file (1-based)
    start: float  # seconds
    end: float  # seconds
    text: str  # markup removed, lines joined with spaces; "" when the cue holds no words
    line: int  # line of the file where the cue's time line is, for messages


@dataclass(frozen=True)
class SubtitleProblem:
    line: int  # line number in the subtitle file
    reason: str


def read_subtitles(path: str | os.PathLike) -> tuple[list[Cue], list[SubtitleProblem]]:
    """The cues of an .srt or .vtt file in file order, and the blocks that could not be read.

    Raises ManifestError when the file is missing, not UTF-8, or holds no cue at all."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"subtitle file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"subtitle file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                            "(e.g. `iconv -f CP1252 -t UTF-8`)") from None
    cues, problems = parse_subtitles(text)
    if not cues:
        detail = f"; first problem: line {problems[0].line}: {problems[0].reason}" if problems else ""
        raise ManifestError(f"subtitle file {path} holds no cues (expected SRT or WebVTT: "
                            f"'00:00:01,000 --> 00:00:02,500' lines){detail}")
    return cues, problems


def parse_subtitles(text: str) -> tuple[list[Cue], list[SubtitleProblem]]:
    """Parse SRT or WebVTT text (told apart by the WEBVTT header)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    vtt = lines[0].strip().startswith("WEBVTT")
    cues, problems = [], []
    for first, block in _blocks(lines):
        cue, problem = _cue(first, block, position=len(cues) + 1, vtt=vtt)
        if cue is not None:
            cues.append(cue)
        elif problem is not None:
            problems.append(problem)
    return cues, problems


def _blocks(lines: list[str]):
    """(line number of the block's first line, its lines) for each blank-line separated block."""
    block, first = [], 0
    for number, line in enumerate(lines + [""], start=1):
        if line.strip():
            if not block:
                first = number
            block.append(line)
        elif block:
            yield first, block
            block = []


def _cue(first: int, block: list[str], position: int, vtt: bool) -> tuple[Cue | None, SubtitleProblem | None]:
    head = block[0].strip()
    if vtt and (head.startswith(("WEBVTT", "NOTE", "STYLE", "REGION"))):
        return None, None  # header and comment blocks carry no cue
    k = next((i for i, line in enumerate(block[:2]) if "-->" in line), None)
    if k is None:  # name the line that should have held the times: after the number, if any
        j = 1 if head.isdigit() and len(block) > 1 else 0
        return None, SubtitleProblem(first + j, f"{block[j].strip()[:60]!r} is not a time line "
                                                "('00:00:01,000 --> 00:00:02,500')")
    match = _TIME_LINE.match(block[k])
    if not match:
        return None, SubtitleProblem(first + k, f"cannot read the times in {block[k].strip()[:60]!r}")
    start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
    number = position
    if not vtt and k == 1 and head.isdigit():
        number = int(head)
    text = " ".join(clean_text(line) for line in block[k + 1:])
    return Cue(number, start, end, " ".join(text.split()), first + k), None


def _seconds(parts) -> float:
    hours, minutes, seconds, fraction = parts
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def clean_text(line: str) -> str:
    """A subtitle line as plain words: tags and override blocks removed, entities (&amp;) decoded."""
    return html.unescape(_TAG.sub("", line)).strip()


def format_time(seconds: float) -> str:
    """00:01:02,345, as SRT writes it: messages quote cue times the way the user's file shows them."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
