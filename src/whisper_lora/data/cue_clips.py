"""Plan training clips from a long recording's subtitle cues: where to cut, and each clip's segments.

Whisper trains on windows of at most 30 s, and timestamp training (--timestamps) needs each
segment's times inside its window. Cutting a recording every 30 s would split cues in two, with
half a sentence's words on each side; here clips are cut only between cues, so every cue lies
whole in one clip, and each cut sits in the pause between two cues (at its middle, or PAD_SECONDS
from the speech when the pause is long), so no clip holds speech that its text leaves out.

What real subtitle files hold, and what becomes of it (each one a CueNote in the report):
- a cue with no words (music notes, markup only): skipped;
- a cue that starts after the audio ends: skipped; one that ends after it: its end moves to the
  audio's end (subtitles made for another cut of the video);
- a cue that ends before it starts, or is longer than a clip may be: skipped;
- cues that overlap: when the overlap is under half the shorter cue, the usual case of timing
  slop, the boundary moves to the middle of the overlap; a larger one (two people talking at once)
  merges them into one segment with both texts, as the audio cannot be split between them;
- a cue that would cross the 30-s limit of the clip being filled starts the next clip instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .subtitles import Cue, format_time

PAD_SECONDS = 0.2  # audio kept before the first and after the last cue of a clip, where the pause allows
TIME_DECIMALS = 3  # segment times in the manifest, in seconds (Whisper's tokens step by 0.02)


@dataclass(frozen=True)
class CueNote:
    cue: Cue
    reason: str  # what was wrong and what was done
    dropped: bool  # True: the cue's words are in no clip


@dataclass
class Segment:
    start: float  # seconds in the recording
    end: float
    text: str
    cues: list[Cue] = field(default_factory=list)  # the cues it came from, as the file gives them


@dataclass(frozen=True)
class ClipPlan:
    start: float  # seconds in the recording
    end: float
    segments: list[dict]  # {"start", "end", "text"}, times relative to the clip's start
    cues: list[int]  # numbers of the cues in this clip

    @property
    def text(self) -> str:
        return " ".join(s["text"] for s in self.segments)


def plan_clips(cues: list[Cue], duration: float, max_seconds: float = 30.0) -> tuple[list[ClipPlan], list[CueNote]]:
    """Clips of at most max_seconds, cut between cues, and a note for each cue that needed handling."""
    notes: list[CueNote] = []
    segments = _merge_overlaps(_usable(cues, duration, max_seconds, notes), max_seconds, notes)
    groups = _group(segments, max_seconds, notes)
    clips = []
    for k, group in enumerate(groups):
        before = groups[k - 1][-1].end if k else 0.0
        after = groups[k + 1][0].start if k + 1 < len(groups) else duration
        first, last = group[0], group[-1]
        start = max(first.start - PAD_SECONDS, (before + first.start) / 2, last.end - max_seconds, 0.0)
        end = min(last.end + PAD_SECONDS, (last.end + after) / 2, start + max_seconds, duration)
        numbers = [c.number for s in group for c in s.cues]
        clips.append(ClipPlan(start, end, [_relative(s, start) for s in group], numbers))
    return clips, notes


def _usable(cues: list[Cue], duration: float, max_seconds: float, notes: list[CueNote]) -> list[Segment]:
    kept = []
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):  # stable: cues out of order still pair up
        if not cue.text:
            notes.append(CueNote(cue, "has no words: skipped", dropped=True))
        elif cue.start >= duration:
            notes.append(CueNote(cue, f"starts after the audio ends ({format_time(duration)}): skipped", dropped=True))
        elif cue.end <= cue.start:
            notes.append(CueNote(cue, "ends before it starts: skipped (fix its times)", dropped=True))
        else:
            end = cue.end
            if end > duration:
                notes.append(CueNote(cue, f"ends after the audio ends ({format_time(duration)}): its end moved "
                                          "there", dropped=False))
                end = duration
            if end - cue.start > max_seconds:
                notes.append(CueNote(cue, f"is {end - cue.start:.1f} s long, over the {max_seconds:g}-s clip "
                                          "limit: skipped (split it into shorter cues)", dropped=True))
                continue
            kept.append(Segment(cue.start, end, cue.text, [cue]))
    return kept


def _merge_overlaps(segments: list[Segment], max_seconds: float, notes: list[CueNote]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if prev is None or seg.start >= prev.end:
            out.append(seg)
            continue
        overlap = min(prev.end, seg.end) - seg.start
        cue = seg.cues[0]
        if overlap < 0.5 * min(prev.end - prev.start, seg.end - seg.start):
            middle = seg.start + overlap / 2
            notes.append(CueNote(cue, f"overlaps cue {prev.cues[-1].number} by {overlap:.2f} s: the boundary between "
                                      f"them moved to {format_time(middle)}", dropped=False))
            prev.end, seg.start = middle, middle
            out.append(seg)
        elif max(prev.end, seg.end) - prev.start <= max_seconds:
            notes.append(CueNote(cue, f"overlaps cue {prev.cues[-1].number} by {overlap:.2f} s (speech at the "
                                      "same time): merged with it into one segment", dropped=False))
            prev.end = max(prev.end, seg.end)
            prev.text = f"{prev.text} {seg.text}"
            prev.cues.extend(seg.cues)
        else:
            notes.append(CueNote(cue, f"overlaps cue {prev.cues[-1].number} by {overlap:.2f} s, and together they are "
                                      f"over {max_seconds:g} s: skipped", dropped=True))
    return out


def _group(segments: list[Segment], max_seconds: float, notes: list[CueNote]) -> list[list[Segment]]:
    """Consecutive segments, as many as fit in max_seconds from the group's first start."""
    groups: list[list[Segment]] = []
    for seg in segments:
        if groups and seg.end - groups[-1][0].start <= max_seconds:
            groups[-1].append(seg)
            continue
        if groups:
            limit = groups[-1][0].start + max_seconds
            if seg.start < limit < seg.end:
                notes.append(CueNote(seg.cues[0], f"would cross the {max_seconds:g}-s limit of clip {len(groups)} "
                                                   f"(at {format_time(limit)}): it starts clip {len(groups) + 1} "
                                                   "instead, whole", dropped=False))
        groups.append([seg])
    return groups


def _relative(seg: Segment, offset: float) -> dict:
    return {"start": round(seg.start - offset, TIME_DECIMALS), "end": round(seg.end - offset, TIME_DECIMALS),
            "text": seg.text}

