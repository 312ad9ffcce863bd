"""Long audio decoded as a batch: cut into pieces of at most 30 s at its quietest moments, the
pieces decoded together, and each piece's segments put back on its file's timeline.

Whisper's encoder reads 30-second windows. Decoding a long file window after window, each
conditioned on the text before it, keeps one window in flight at a time; pieces decoded on their
own can go through the model together in a batch, which keeps a CPU or GPU busier. A cut inside a
word would garble it in both pieces, so each cut goes where the audio is quietest (a pause)
within the last few seconds before the 30-second limit.

With --vad (options.vad) the pieces come from the speech regions Silero VAD finds (vad_pieces):
each piece is a stretch of the file from the start of a region to the end of a later one, so no
time has to be mapped back, and the music, noise or silence between pieces is never decoded.

The decoding itself is a backend's (Backend.decode_batch); this module only plans it. The
transformers backend decodes long audio this way; the CTranslate2 backend leaves it to
faster-whisper's batched pipeline, which cuts with Silero VAD instead.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from . import packing, vad
from ..audio import CHUNK_LENGTH, SAMPLE_RATE
from .guards import is_quiet
from .options import TranscribeOptions
from .results import Decoded, Segment, moved

log = logging.getLogger(__name__)

MAX_SECONDS = float(CHUNK_LENGTH)  # the encoder's window
SEARCH_SECONDS = 8.0  # a cut is looked for in the last this many seconds before the limit
FRAME_SECONDS = 0.02  # energy is measured per 20-ms frame
SMOOTH_SECONDS = 0.3  # and averaged over this long, so a short dip inside a word is not a pause
TAIL_SECONDS = 1.0  # sound left after a piece's last segment that is decoded again


def cut_at_pauses(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS,
                  search_seconds: float = SEARCH_SECONDS) -> list[tuple[int, int]]:
    """(start_sample, end_sample) pieces, each at most max_seconds, covering audio with no gaps.

    From the start of each piece: what remains is taken whole if it fits, else the piece ends at
    the centre of the quietest smoothed frame in the last search_seconds before the limit (the
    latest one on a tie, so pieces are as long as they can be)."""
    n = len(audio)
    limit = int(max_seconds * sample_rate)
    if n <= limit:
        return [(0, n)]
    frame = max(1, int(FRAME_SECONDS * sample_rate))
    frames = n // frame
    power = np.square(np.asarray(audio[:frames * frame], dtype=np.float64)).reshape(frames, frame)
    rms = np.sqrt(power.mean(axis=1))
    width = max(1, int(round(SMOOTH_SECONDS / FRAME_SECONDS)))
    smooth = np.convolve(rms, np.ones(width) / width, mode="same")
    search = int(search_seconds * sample_rate)
    pieces, start = [], 0
    while n - start > limit:
        # frames whose centre lies in [start + limit - search, start + limit]
        first = max(start // frame + 1, -(-(start + limit - search - frame // 2) // frame))
        last = (start + limit - frame // 2) // frame
        if last < first:  # no frame to choose from: cut at the limit
            end = start + limit
        else:
            window = smooth[first:last + 1]
            quietest = first + len(window) - 1 - int(np.argmin(window[::-1]))
            end = quietest * frame + frame // 2
        pieces.append((start, end))
        start = end
    pieces.append((start, n))
    return pieces


def vad_pieces(audio: np.ndarray, regions: list[tuple[int, int]],
               max_seconds: float = MAX_SECONDS) -> list[tuple[int, int]]:
    """(start_sample, end_sample) pieces of at most max_seconds that hold the speech regions
    (vad.speech_regions: in order, not overlapping) and nothing between pieces.

    Consecutive regions share a piece while the stretch from the first one's start to the last
    one's end fits max_seconds: a piece is that contiguous stretch of the file, what lies between
    its regions included, so its segments need only the piece's start added. (Whisper wrote
    nothing over the 6-s and 12-s stretches of music and noise inside two pieces of
    benchmarks/vad_check.py, so a piece is not split at such gaps: each split costs a window.)
    A region longer than max_seconds alone is cut inside it at its pauses (cut_at_pauses)."""
    limit = int(max_seconds * SAMPLE_RATE)
    pieces: list[tuple[int, int]] = []
    growing = False  # the last piece may take in the next region
    for a, b in regions:
        if b - a > limit:
            pieces += [(a + x, a + y) for x, y in cut_at_pauses(audio[a:b], max_seconds=max_seconds)]
            growing = False
        elif growing and b - pieces[-1][0] <= limit:
            pieces[-1] = (pieces[-1][0], b)
        else:
            pieces.append((a, b))
            growing = True
    return pieces


def piece_terms(timed_terms, first_sample: int, samples: int) -> list[str]:
    """The glossary terms of a piece: those of the (start, end, terms) spans of its file that it
    overlaps (packing.window_terms orders them)."""
    a, b = first_sample / SAMPLE_RATE, (first_sample + samples) / SAMPLE_RATE
    return packing.window_terms([t for start, end, t in timed_terms if start < b and end > a])


def decode_pieces(audios: list[np.ndarray], languages: list[str], decode_batch,
                  options: TranscribeOptions, terms=None) -> list[list[Segment]]:
    """Each file's segments, in time order on its own timeline: its pieces (cut_at_pauses, or with
    options.vad vad_pieces) that are not quiet, decoded batch_size at a time across files with
    timestamps and the file's language, then the sentences Whisper left out at the ends of pieces
    (undecoded_tail, decode_tails).

    decode_batch is a backend's (Backend.decode_batch); languages: one code per file. terms: per
    file, (start, end, glossary terms) spans of its timeline, or None (Backend.decode_long)."""
    pieces = []  # (file, first sample, audio) of every piece with sound in it, in file and time order
    for f, audio in enumerate(audios):
        spans = vad_pieces(audio, vad.speech_regions(audio)) if options.vad else cut_at_pauses(audio)
        for a, b in spans:
            if not is_quiet(audio[a:b], options):
                pieces.append((f, a, audio[a:b]))
    segments: list[list[Segment]] = [[] for _ in audios]
    tails = []  # (file, first sample, audio) of the sound left after a piece's last segment
    for start in range(0, len(pieces), options.batch_size):
        batch = pieces[start:start + options.batch_size]
        extra = {} if terms is None else {"terms": [piece_terms(terms[f], a, len(piece)) for f, a, piece in batch]}
        decoded, _ = decode_batch([piece for _, _, piece in batch], timestamps=True,
                                  languages=[languages[f] for f, _, _ in batch], **extra)
        for (f, a, piece), dec in zip(batch, decoded):
            segments[f] += _placed(dec.segments, a, len(audios[f]))
            rest = undecoded_tail(piece, dec.segments, options)
            if rest is not None:
                tails.append((f, a + rest, piece[rest:]))
    for code in dict.fromkeys(languages[f] for f, _, _ in tails):
        group = [t for t in tails if languages[t[0]] == code]
        log.debug("decoding again the %d tails Whisper left out (%s)", len(group), code)
        tail_terms = None if terms is None else [piece_terms(terms[f], a, len(t)) for f, a, t in group]
        for (f, a, _), dec in zip(group, decode_tails([t[2] for t in group], code, decode_batch, options,
                                                      tail_terms)):
            segments[f] += _placed(dec.segments, a, len(audios[f]))
    return [sorted(segs, key=lambda s: s.start) for segs in segments]


def _placed(segments: list[Segment], first_sample: int, file_samples: int) -> list[Segment]:
    """A piece's segments on its file's timeline: moved by the piece's start, clamped to the file."""
    return moved(segments, first_sample / SAMPLE_RATE, file_samples / SAMPLE_RATE)


def undecoded_tail(piece: np.ndarray, segments: list[Segment], options: TranscribeOptions) -> int | None:
    """First sample of the sound left after the piece's last segment, or None.

    Whisper often ends a window early, leaving its last sentence out (6 of 22 pieces of a
    10-minute file here); openai-whisper's sequential loop decodes from the last timestamp on
    in the next window, and decode_pieces decodes these tails after all pieces, packed. Only a
    tail long enough to hold speech and not quiet, of a piece that had at least a second
    decoded (so no piece is decoded again whole)."""
    if not segments:
        return None
    end = int(round(segments[-1].end * SAMPLE_RATE))
    if end < SAMPLE_RATE or len(piece) - end < TAIL_SECONDS * SAMPLE_RATE:
        return None
    return None if is_quiet(piece[end:], options) else end


def decode_tails(tails: list[np.ndarray], language: str, decode_batch, options: TranscribeOptions,
                 terms=None) -> list[Decoded]:
    """Tails are a sentence or two each: packed several to a window, like short files, with
    timestamps and the language of their file."""
    def decode_in_language(audios, **kwargs):
        return decode_batch(audios, languages=[language] * len(audios), **kwargs)
    return packing.decode_packed(tails, decode_in_language, replace(options, return_timestamps=True), terms)
