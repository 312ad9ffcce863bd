"""Cut long audio into pieces of at most 30 s at its quietest moments, to decode them as a batch.

Whisper's encoder reads 30-second windows. Decoding a long file window after window, each
conditioned on the text before it, keeps one window in flight at a time; pieces decoded on their
own can go through the model together in a batch, which keeps a CPU or GPU busier. A cut inside a
word would garble it in both pieces, so each cut goes where the audio is quietest (a pause)
within the last few seconds before the 30-second limit.
"""

from __future__ import annotations

import numpy as np

from ..audio import CHUNK_LENGTH, SAMPLE_RATE

MAX_SECONDS = float(CHUNK_LENGTH)  # the encoder's window
SEARCH_SECONDS = 8.0  # a cut is looked for in the last this many seconds before the limit
FRAME_SECONDS = 0.02  # energy is measured per 20-ms frame
SMOOTH_SECONDS = 0.3  # and averaged over this long, so a short dip inside a word is not a pause


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
