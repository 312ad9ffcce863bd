"""Several short clips in one 30-second window: the encoder's cost is per window, not per clip.

Whisper's encoder always reads 30 s (shorter audio is padded with silence), and on a CPU the
encoder is most of the work: a 3-second clip costs as much as a 30-second one. Packing puts
clips one after another, separated by silence, into a window, decodes the window once with
timestamps, and hands each timed segment back to the clip it lies in.

A clip's share of a window can be in doubt: a segment that spans two clips, a window whose
decoding failed the guards or did not reach its end, or a clip that got no text (it may be
silence). Such clips are packed once more, further apart and beside other neighbours; a clip
still in doubt then decodes alone, in a window of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE
from .results import Decoded, Segment

log = logging.getLogger(__name__)

WINDOW_SECONDS = 30.0
GAP_SECONDS = 0.8  # silence between clips: Whisper ends a segment there (1.5 s: as accurate, 1.3x slower)
RETRY_GAP_SECONDS = 1.5  # wider, for clips packed again after the first pass left them in doubt
MAX_CLIP_SECONDS = 10.0  # longer clips gain little from sharing a window and decode alone
STRADDLE_SECONDS = 0.3  # a segment overlapping two clips by more than this each is ambiguous
PACK_FACTOR = 8  # a backend that packs takes this many batches of files at once: ~a batch of windows


@dataclass
class Window:
    clips: list[int]  # indices into the caller's list of clips, in window order
    offsets: list[float] = field(default_factory=list)  # start of each clip in the window, seconds
    durations: list[float] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.offsets[-1] + self.durations[-1] if self.clips else 0.0


def plan(durations: list[float], window: float = WINDOW_SECONDS, gap: float | None = None,
         max_clip: float = MAX_CLIP_SECONDS) -> tuple[list[Window], list[int]]:
    """First-fit decreasing: (windows of packed clips, indices of clips that decode alone).

    gap None: GAP_SECONDS, read at call time (benchmarks/infer_speed.py --pack-gap sets it).
    A window holding a single clip is pointless, so such clips are returned as alone too."""
    gap = GAP_SECONDS if gap is None else gap
    order = sorted((i for i, d in enumerate(durations) if d <= max_clip), key=lambda i: -durations[i])
    alone = [i for i, d in enumerate(durations) if d > max_clip]
    windows: list[Window] = []
    for i in order:
        for w in windows:
            start = w.end + gap
            if start + durations[i] <= window:
                break
        else:
            w, start = Window([]), 0.0
            windows.append(w)
        w.clips.append(i)
        w.offsets.append(start)
        w.durations.append(durations[i])
    alone += [w.clips[0] for w in windows if len(w.clips) == 1]
    return [w for w in windows if len(w.clips) > 1], sorted(alone)


def window_audio(w: Window, audios: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(int(round(w.end * SAMPLE_RATE)) + 1, dtype=np.float32)
    for i, off in zip(w.clips, w.offsets):
        start = int(round(off * SAMPLE_RATE))
        out[start:start + len(audios[i])] = audios[i]
    return out


def split(w: Window, segments: list[Segment]) -> tuple[dict[int, list[Segment]], set[int]]:
    """Hand the window's segments to its clips: ({clip: segments in clip time}, clips in doubt)."""
    spans = [(off, off + dur) for off, dur in zip(w.offsets, w.durations)]
    given: dict[int, list[Segment]] = {i: [] for i in w.clips}
    doubt: set[int] = set()
    for seg in segments:
        overlaps = [max(0.0, min(seg.end, b) - max(seg.start, a)) for a, b in spans]
        touched = [k for k, o in enumerate(overlaps) if o > STRADDLE_SECONDS]
        if len(touched) > 1:
            doubt.update(w.clips[k] for k in touched)
            continue
        if max(overlaps) > 0:
            k = int(np.argmax(overlaps))
        else:  # a segment in a gap (or a zero-length one): the clip whose span is nearest
            mid = (seg.start + seg.end) / 2
            k = int(np.argmin([min(abs(mid - a), abs(mid - b)) for a, b in spans]))
        off, dur = w.offsets[k], w.durations[k]
        start = min(max(seg.start - off, 0.0), dur)
        given[w.clips[k]].append(Segment(start, min(max(seg.end - off, start), dur), seg.text))
    doubt.update(i for i, segs in given.items() if not segs)
    return given, doubt


def decode_short(audios: list[np.ndarray], decode_batch, options, packing: bool) -> list[Decoded]:
    """A backend's decode_short: short audio in batches of batch_size, or packed into windows
    when the backend packs (see decode_packed for decode_batch)."""
    if packing and len(audios) > 1:
        return decode_packed(audios, decode_batch, options)
    out = []
    for start in range(0, len(audios), options.batch_size):
        out += decode_batch(audios[start:start + options.batch_size])[0]
    return out


def decode_packed(audios: list[np.ndarray], decode_batch, options) -> list[Decoded]:
    """Decode short clips packed into windows, batch_size windows at a time.

    Clips in doubt after the first pass (and clips left alone in a window of one) are packed
    once more, RETRY_GAP_SECONDS apart and beside other neighbours; only what is still in doubt
    then decodes alone, a window per clip. A handful of doubtful clips thus costs a window, not
    a window each.

    decode_batch(audios, timestamps=..., retry=...) -> (Decoded per audio, trouble per audio) is
    the backend's one-batch decoder; trouble means the text failed the guards or was cut off."""
    results: list[Decoded | None] = [None] * len(audios)
    durations = [len(a) / SAMPLE_RATE for a in audios]
    windows, alone = plan(durations)
    todo = [i for i in alone if durations[i] <= MAX_CLIP_SECONDS]  # each left in a window of one
    alone = [i for i in alone if durations[i] > MAX_CLIP_SECONDS]
    todo += _decode_windows(windows, audios, decode_batch, options, results)
    if todo:
        again, single = plan([durations[i] for i in todo], gap=RETRY_GAP_SECONDS)
        for w in again:
            w.clips = [todo[k] for k in w.clips]
        alone += [todo[k] for k in single] + _decode_windows(again, audios, decode_batch, options, results)
    if alone:
        log.debug("packing: %d of %d clips decoded alone", len(alone), len(audios))
    alone.sort()
    size = options.batch_size
    for start in range(0, len(alone), size):
        idx = alone[start:start + size]
        for i, dec in zip(idx, decode_batch([audios[i] for i in idx])[0]):
            results[i] = dec
    return results


def _decode_windows(windows: list[Window], audios, decode_batch, options, results) -> list[int]:
    """Decode windows batch_size at a time, filling results of the clips handed a clear share;
    returns the clips in doubt."""
    doubtful: list[int] = []
    for start in range(0, len(windows), options.batch_size):
        batch = windows[start:start + options.batch_size]
        decoded, trouble = decode_batch([window_audio(w, audios) for w in batch], timestamps=True, retry=False)
        for w, dec, bad in zip(batch, decoded, trouble):
            given, doubt = split(w, dec.segments)
            if bad:
                doubt = set(w.clips)
            doubtful += sorted(doubt)
            for i, segs in given.items():
                if i not in doubt:
                    results[i] = Decoded(_as_asked(segs, len(audios[i]), options.return_timestamps),
                                         dec.language, None)
    return doubtful


def _as_asked(segments: list[Segment], samples: int, timestamps: bool) -> list[Segment]:
    """Without timestamps a short file is one segment over its whole length, as when decoded alone."""
    if timestamps or not segments:
        return segments
    return [Segment(0.0, samples / SAMPLE_RATE, " ".join(s.text for s in segments))]
