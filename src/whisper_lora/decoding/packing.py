"""Several short clips in one 30-second window: the encoder's cost is per window, not per clip.

Whisper's encoder always reads 30 s (shorter audio is padded with silence), and on a CPU the
encoder is most of the work: a 3-second clip costs as much as a 30-second one. Packing puts
clips one after another, separated by silence, into a window, decodes the window once with
timestamps, and hands each timed segment back to the clip it lies in.

A window's timestamps can be wrong, and then a segment lands on the wrong clip: a file would get
another file's words. So a window is trusted whole or not at all: it is in doubt when a segment
spans two clips or lies in the silence between them, when segments go back in time, when a clip
is passed over (or the last ones get nothing while another got two segments), when two clips get
the same words, or when the decoding failed the guards or did not reach its end. The clips of a
window in doubt are packed once more, further apart and beside other neighbours; a clip still in
doubt then decodes alone, in a window of its own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..audio import CHUNK_LENGTH, SAMPLE_RATE
from . import vad
from .guards import is_quiet
from ..languages import CJK
from .results import Decoded, Segment, moved
from ..tokens import TIME_PRECISION

log = logging.getLogger(__name__)

WINDOW_SECONDS = float(CHUNK_LENGTH)
GAP_SECONDS = 0.8  # silence between clips: Whisper ends a segment there (1.5 s: as accurate, 1.3x slower)
RETRY_GAP_SECONDS = 1.5  # wider, for clips packed again after the first pass left them in doubt
MAX_CLIP_SECONDS = 10.0  # longer clips gain little from sharing a window and decode alone
STRADDLE_SECONDS = 0.3  # a segment overlapping two clips by more than this each is ambiguous
TIME_SLACK = TIME_PRECISION  # one timestamp step: times closer than this are the same time
# Two clips of a window whose texts share at least 3 words, and 60% of the shorter one's, are in
# doubt: one clip's words written twice. Different sentences rarely do (a retry is all it costs).
SAME_WORDS_MIN = 3
SAME_WORDS_SHARE = 0.6
_WORD = re.compile(f"[{CJK}]|[^\\W_{CJK}]+")  # a kana or CJK character is a word
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


def split(w: Window, segments: list[Segment]) -> tuple[dict[int, list[Segment]], str | None]:
    """Hand the window's segments to its clips: ({clip: segments in clip time}, doubt).

    doubt is None when every clip's share is clear, else why the window's timeline cannot be
    trusted. Then no clip of the window keeps its share, since Whisper placed at least one
    segment where no single clip is and may have misplaced others (measured in bf16: a window
    whose first segment ran over five clips gave its last clip the words of the fourth); given
    then only tells which clips heard something (a segment across clips counts for each).

    Clips with no text after the last one with text are no doubt when every other clip got one
    segment: Whisper often ends a window early (all but the last clip heard, in 4 of 8 windows
    of one set here). The others keep their shares; those clips, with empty shares, are the
    caller's to decode again."""
    spans = [(off, off + dur) for off, dur in zip(w.offsets, w.durations)]
    given: dict[int, list[Segment]] = {i: [] for i in w.clips}
    doubts = []
    last_end = 0.0
    for seg in segments:
        if seg.start < last_end - TIME_SLACK:
            doubts.append(f"segments go back in time at {seg.start:.2f} s")
        last_end = max(last_end, seg.end)
        overlaps = [max(0.0, min(seg.end, b) - max(seg.start, a)) for a, b in spans]
        touched = [k for k, o in enumerate(overlaps) if o > STRADDLE_SECONDS]
        if len(touched) > 1:
            doubts.append(f"a segment runs across {len(touched)} clips ({seg.start:.2f}-{seg.end:.2f} s)")
        k = int(np.argmax(overlaps))
        if not _inside(seg, spans[k], overlaps[k]):
            doubts.append(f"a segment lies in the silence between clips ({seg.start:.2f}-{seg.end:.2f} s)")
        for k in touched if len(touched) > 1 else [k]:
            given[w.clips[k]] += moved([seg], -w.offsets[k], w.durations[k])
    heard = [k for k, i in enumerate(w.clips) if given[i]]
    unheard = len(w.clips) - len(heard)
    skipped = [k for k in range(heard[-1] if heard else 0) if k not in heard]
    if not heard or skipped:  # a clip passed over: its words may have gone to a neighbour
        doubts.append(f"{unheard} of {len(w.clips)} clips got no text")
    elif unheard and any(len(segs) > 1 for segs in given.values()):
        # Whisper's times may lag behind its words: a clip holding its own and the next clip's
        # words, and so on, leaves the last clip with none (seen: "Seven." given "7. Hello.")
        doubts.append(f"the last {unheard} clips got no text and a clip got two segments")
    if not doubts:
        texts = {i: " ".join(s.text for s in segs) for i, segs in given.items()}
        if any(_same_words(texts[a], texts[b]) for a, b in combinations(w.clips, 2)):
            doubts.append("two clips got the same words")
    return given, "; ".join(doubts) if doubts else None


def _inside(seg: Segment, span: tuple[float, float], overlap: float) -> bool:
    """Most of the segment lies in the clip (or, for a segment of no length, it is at the clip).

    Whisper's segments in a well-read window lie 75-100% inside their clips; a segment mostly
    in a pause means the window's times and its words have parted."""
    length = seg.end - seg.start
    if length <= TIME_SLACK:
        return span[0] - TIME_SLACK <= seg.start <= span[1] + TIME_SLACK
    return overlap + TIME_SLACK >= length / 2


def words(text: str) -> set[str]:
    """Lower-case words; each kana or CJK character counts as one (those scripts write no spaces)."""
    return set(_WORD.findall(text.lower()))


def _same_words(a: str, b: str) -> bool:
    """Two clips' texts share most of their words: one clip's words written twice, a shift."""
    wa, wb = words(a), words(b)
    shared = len(wa & wb)
    return shared >= SAME_WORDS_MIN and shared >= SAME_WORDS_SHARE * min(len(wa), len(wb))


def decode_short(audios: list[np.ndarray], decode_batch, options, packing: bool, terms=None) -> list[Decoded]:
    """Backend.decode_short: short audio in batches of batch_size, or packed into windows when
    `packing` (Backend.packing); decode_batch as for decode_packed. Quiet audio (guards.is_quiet),
    and with options.vad audio where Silero VAD hears no speech (music, noise), is not decoded at
    all: its text is empty, as when transcribe reads a quiet file. Audio with speech decodes whole.

    terms: glossary terms per audio for its prompt (best first), or None; a packed window's
    prompt holds the terms of all its clips (window_terms)."""
    results: list[Decoded | None] = [None] * len(audios)
    todo = []
    for i, audio in enumerate(audios):
        if is_quiet(audio, options) or (options.vad and not vad.has_speech(audio)):
            results[i] = Decoded([], options.language, None)
        else:
            todo.append(i)
    todo_terms = None if terms is None else [terms[i] for i in todo]
    if packing and len(todo) > 1:
        decoded = decode_packed([audios[i] for i in todo], decode_batch, options, todo_terms)
    else:
        decoded = []
        for start in range(0, len(todo), options.batch_size):
            idx = todo[start:start + options.batch_size]
            decoded += decode_batch([audios[i] for i in idx], **_terms_of(terms, [[i] for i in idx]))[0]
    for i, dec in zip(todo, decoded):
        results[i] = dec
    return results


def decode_packed(audios: list[np.ndarray], decode_batch, options, terms=None) -> list[Decoded]:
    """Decode short clips packed into windows, batch_size windows at a time.

    A window is trusted whole or not at all (see split). The clips of a window in doubt are
    packed once more, RETRY_GAP_SECONDS apart and beside other neighbours, except those that got
    no text, which decode alone at once (a noise Whisper ignores would put every window it joins
    in doubt). Clips left alone in a window of one join that second pass too; a window in doubt
    there sends all its clips to decode alone, a window per clip.

    decode_batch(audios, timestamps=..., retry=...) -> (Decoded per audio, trouble per audio) is
    a backend's Backend.decode_batch, or one that wraps it (to count its calls, or to force a
    language: long_form.decode_tails); trouble means the text failed the guards or was cut off.
    terms: glossary terms per audio, or None (then decode_batch is called without them)."""
    results: list[Decoded | None] = [None] * len(audios)
    durations = [len(a) / SAMPLE_RATE for a in audios]
    windows, single = _plan(list(range(len(audios))), durations, GAP_SECONDS)
    alone = [i for i in single if durations[i] > MAX_CLIP_SECONDS]
    again = [i for i in single if durations[i] <= MAX_CLIP_SECONDS]  # each left in a window of one
    doubtful, empty = _decode_windows(windows, audios, decode_batch, options, results, terms)
    again += doubtful
    alone += empty
    if again:
        windows, single = _plan(sorted(again), durations, RETRY_GAP_SECONDS)
        doubtful, empty = _decode_windows(windows, audios, decode_batch, options, results, terms)
        alone += single + doubtful + empty
    if alone:
        log.debug("packing: %d of %d clips decoded alone", len(alone), len(audios))
    alone.sort()
    size = options.batch_size
    for start in range(0, len(alone), size):
        idx = alone[start:start + size]
        for i, dec in zip(idx, decode_batch([audios[i] for i in idx], **_terms_of(terms, [[i] for i in idx]))[0]):
            results[i] = dec
    return results


def window_terms(clip_terms: list[list[str]]) -> list[str]:
    """One prompt's terms for clips that share a window: each clip's best term, then each one's
    second, and so on, without repeats, so that the terms the prompt cannot hold are the clips'
    weakest, not the last clip's all."""
    out: list[str] = []
    for rank in range(max(map(len, clip_terms), default=0)):
        out += [t[rank] for t in clip_terms if rank < len(t) and t[rank] not in out]
    return out


def _terms_of(terms, groups: list[list[int]]) -> dict:
    """decode_batch's terms= argument for rows made of these groups of clips ({} without terms)."""
    if terms is None:
        return {}
    return {"terms": [window_terms([terms[i] for i in group]) for group in groups]}


def _plan(clips: list[int], durations: list[float], gap: float) -> tuple[list[Window], list[int]]:
    """plan() over some of the clips, with windows and leftovers in the caller's clip indices."""
    windows, single = plan([durations[i] for i in clips], gap=gap)
    for w in windows:
        w.clips = [clips[k] for k in w.clips]
    return windows, [clips[k] for k in single]


def _decode_windows(windows: list[Window], audios, decode_batch, options, results,
                    terms=None) -> tuple[list[int], list[int]]:
    """Decode windows batch_size at a time, filling results of the clips of trusted windows.

    Returns (clips to decode again, clips of windows in doubt that got no text): the first are
    the clips of windows in doubt that got text, and those a trusted window left unheard at
    its end."""
    doubtful: list[int] = []
    empty: list[int] = []
    for start in range(0, len(windows), options.batch_size):
        batch = windows[start:start + options.batch_size]
        decoded, trouble = decode_batch([window_audio(w, audios) for w in batch], timestamps=True, retry=False,
                                        **_terms_of(terms, [w.clips for w in batch]))
        for w, dec, bad in zip(batch, decoded, trouble):
            given, doubt = split(w, dec.segments)
            if bad:  # a loop, an unreliable or a cut-off text: who said what is unknown
                doubtful += w.clips
            elif doubt is not None:
                log.debug("packing: window of %d clips in doubt: %s", len(w.clips), doubt)
                doubtful += [i for i in w.clips if given[i]]
                empty += [i for i in w.clips if not given[i]]
            else:
                for i, segs in given.items():
                    if not segs:  # after the last clip Whisper decoded: never heard, not misheard
                        doubtful.append(i)
                        continue
                    results[i] = Decoded(_as_asked(segs, len(audios[i]), options.return_timestamps),
                                         dec.language, None)
    return doubtful, empty


def _as_asked(segments: list[Segment], samples: int, timestamps: bool) -> list[Segment]:
    """Without timestamps a short file is one segment over its whole length, as when decoded alone."""
    if timestamps or not segments:
        return segments
    return [Segment(0.0, samples / SAMPLE_RATE, " ".join(s.text for s in segments))]
