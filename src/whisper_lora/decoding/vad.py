"""Voice activity detection (--vad): where in a 16 kHz array someone speaks, with the Silero VAD
model that faster-whisper ships in its wheel (faster_whisper/assets/, silero_vad_v6.onnx in 1.2;
run by onnxruntime): nothing is downloaded, and faster-whisper loads the model once per process
(its get_vad_model is functools.lru_cache'd).

Whisper decodes whatever it is given, and over minutes of music or noise it spends a window per
30 s and often writes something (a "Thank you.", lyrics, a sentence repeated). With --vad only the
speech is decoded:
  - short files: a file with no speech in it gives no text and is not decoded (packing.decode_short);
  - batched long form: pieces are cut from the speech regions only (long_form.vad_pieces);
  - sequential long form: the speech regions are joined into one shorter array (speech_only),
    decoded, and the segments put back on the file's timeline with its TimeMap (decode_speech_only),
    as faster-whisper's transcribe(vad_filter=True) does with its SpeechTimestampsMap, except at
    the joins (TimeMap.span: a segment that runs a moment across a join does not span the stretch
    removed there).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import OptionsError
from .results import Decoded, Segment, Word, clamped

# Silero's own settings as faster-whisper uses them, except the silence that ends a region:
# 160 ms (faster-whisper's BatchedInferencePipeline) instead of 2 s (its transcribe), so a long
# stretch of speech splits at its sentence pauses into regions that group well into 30-s pieces.
THRESHOLD = 0.5  # Silero's speech probability above which a 32-ms frame is speech
MIN_SILENCE_MS = 160  # a region ends after this much non-speech
SPEECH_PAD_MS = 400  # each region is widened by this much either side (first and last sounds)
# A segment of joined speech-only audio that runs this far or less across a join, where a stretch
# was removed, is put on one side of it (TimeMap.span): tiny.en's segment starts were up to 0.6 s
# early at the joins of benchmarks/vad_check.py, in the 0.8 s of padding a join keeps.
JOIN_SLACK = 1.0
INSTALL = "--vad needs faster-whisper (it ships the Silero VAD model): pip install 'whisper-lora[vad]'"


def require() -> None:
    """Raise OptionsError naming --vad when faster-whisper (or its onnxruntime) is missing."""
    try:
        import onnxruntime  # noqa: F401  (faster-whisper runs Silero with it)
        from faster_whisper.vad import get_speech_timestamps  # noqa: F401
    except ImportError as exc:
        raise OptionsError(INSTALL) from exc


def speech_regions(audio: np.ndarray, pad_ms: int = SPEECH_PAD_MS) -> list[tuple[int, int]]:
    """(start_sample, end_sample) of each stretch of speech, padded by pad_ms, in order, not overlapping."""
    require()
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        return []
    options = VadOptions(threshold=THRESHOLD, min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=pad_ms)
    return [(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(audio, options, SAMPLE_RATE)
            if r["end"] > r["start"]]


def has_speech(audio: np.ndarray) -> bool:
    return bool(speech_regions(audio))


@dataclass(frozen=True)
class TimeMap:
    """Times in the speech-only audio (the regions joined end to end) <-> times in the file."""
    regions: tuple[tuple[int, int], ...]  # (start, end) samples in the file of each joined region

    @cached_property
    def _ends(self) -> list[int]:
        """End of each region in the speech-only audio, in samples."""
        ends, total = [], 0
        for a, b in self.regions:
            total += b - a
            ends.append(total)
        return ends

    def original(self, t: float, is_end: bool = False) -> float:
        """A time (seconds) in the speech-only audio -> the same moment in the file. A time exactly
        at the join of two regions is the end of the first when is_end, else the start of the next."""
        sample = t * SAMPLE_RATE
        k = self._region(sample, is_end)
        before = self._ends[k] - (self.regions[k][1] - self.regions[k][0])  # region k's start, speech-only
        return (self.regions[k][0] + sample - before) / SAMPLE_RATE

    def _region(self, sample: float, is_end: bool) -> int:
        k = (bisect.bisect_left if is_end else bisect.bisect_right)(self._ends, sample)
        return min(k, len(self._ends) - 1)

    def span(self, start: float, end: float) -> tuple[float, float]:
        """A segment's or word's (start, end) in the speech-only audio -> in the file.

        Whisper's times are a few tenths of a second off, and a segment often starts where the one
        before it ended, in the pause: one that starts just before a join where a long stretch was
        removed would start, in the file, before the whole stretch (measured: 6 of 20 segments
        of benchmarks/vad_check.py, the speech after a minute of music "starting" a minute early,
        as faster-whisper's own mapping does). So a span across a join whose shorter end part,
        before or after the join, is at most JOIN_SLACK (and shorter than what was removed there)
        is taken to start (or end) at the join."""
        a, b = start * SAMPLE_RATE, end * SAMPLE_RATE
        first, last = self._region(a, False), self._region(b, True)
        if last > first:
            head = self._ends[first] - a  # the part in the first region
            tail = b - self._ends[last - 1]  # the part in the last region
            slack = JOIN_SLACK * SAMPLE_RATE
            if head <= min(tail, slack) and head < self._removed(first):
                a = self._ends[first]
            elif tail < head and tail <= slack and tail < self._removed(last - 1):
                b = self._ends[last - 1]
        return self.original(a / SAMPLE_RATE), self.original(b / SAMPLE_RATE, is_end=True)

    def _removed(self, k: int) -> int:
        """Samples of the file left out at the join after region k."""
        return self.regions[k + 1][0] - self.regions[k][1]

    def speech_time(self, t: float) -> float:
        """A time (seconds) in the file -> the speech-only audio; a time between regions goes to
        the join where the removed stretch was."""
        sample, before = t * SAMPLE_RATE, 0
        for a, b in self.regions:
            if sample < b:
                return (before + max(0.0, sample - a)) / SAMPLE_RATE
            before += b - a
        return before / SAMPLE_RATE

    def segments(self, segments: list[Segment], duration: float) -> list[Segment]:
        """Segments (and their words) of the speech-only audio on the file's timeline (span),
        clamped to [0, duration]; a segment is widened to hold its words, whose times (aligned
        word by word) are the more precise."""
        timed = []
        for seg in segments:
            start, end = self.span(seg.start, seg.end)
            words = [Word(*self.span(w.start, w.end), w.word, w.probability) for w in seg.words]
            if words:
                start, end = min(start, words[0].start), max(end, words[-1].end)
            timed.append((start, end, seg.text, words))
        return clamped(timed, duration)


def speech_only(audio: np.ndarray) -> tuple[np.ndarray, TimeMap]:
    """The file's speech regions joined end to end, and the map back to the file's times.
    No speech: an empty array and a map with no regions."""
    regions = speech_regions(audio)
    joined = (np.concatenate([audio[a:b] for a, b in regions]) if regions
              else np.zeros(0, dtype=np.float32))
    return joined.astype(np.float32, copy=False), TimeMap(tuple(regions))


def decode_speech_only(audios: list[np.ndarray], languages, decode) -> list[Decoded]:
    """Long audio decoded on its speech only (sequential long form): each file's speech regions
    joined (speech_only), the files that have some decoded together by decode(speech audios,
    their languages) -> Decoded per audio, and the segments put back on each file's timeline.
    A file with no speech gives no segments and is not decoded.

    languages: one entry per file, passed through to decode as given (the backend's own form,
    e.g. (code, probability)); the Decoded of a file without speech has its code and probability."""
    joined = [speech_only(audio) for audio in audios]
    todo = [i for i, (speech, _) in enumerate(joined) if speech.size]
    decoded = decode([joined[i][0] for i in todo], [languages[i] for i in todo]) if todo else []
    out = [Decoded([], *_code_and_probability(lang)) for lang in languages]
    for i, dec in zip(todo, decoded):
        segments = joined[i][1].segments(dec.segments, len(audios[i]) / SAMPLE_RATE)
        out[i] = Decoded(segments, dec.language, dec.language_probability)
    return out


def _code_and_probability(language) -> tuple[str | None, float | None]:
    if isinstance(language, tuple):
        return language[0], language[1]
    return language, None
