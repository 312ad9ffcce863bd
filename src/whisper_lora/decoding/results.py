"""What transcription returns: one FileResult per input file, holding timed Segments.

Both backends (transformers and CTranslate2) return these types, and every writer reads them,
so the evaluate command and the benchmarks never see backend-specific objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..languages import joins_without_space
from ..tokens import TIME_PRECISION


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the file
    end: float  # end >= start
    word: str  # as decoded, with its leading space where the language writes one (openai-whisper's)
    probability: float  # the mean probability of the word's tokens (openai-whisper's), 0-1


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the file
    end: float  # seconds from the start of the file; end >= start
    text: str  # the words spoken in [start, end], stripped of surrounding spaces
    words: tuple[Word, ...] = ()  # with word timestamps: the segment's words in order; else ()


@dataclass
class FileResult:
    path: str  # the input path as given (or "<array>" for transcribe_array)
    text: str = ""  # the whole transcript: segment texts joined by spaces; "" when silent or failed
    segments: list[Segment] = field(default_factory=list)  # in time order; [] when silent or failed
    language: str | None = None  # language code used for decoding ("en", "zh"); None: failed, or silent
                                 # with nothing to detect a language from
    language_probability: float | None = None  # detection confidence; None when the language was given
    duration: float | None = None  # seconds of audio; None when the file could not be read
    error: str | None = None  # why this file failed (missing, undecodable); None on success

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_dict(cls, data: dict) -> "FileResult":
        """to_dict() read back (keys it does not know are left out)."""
        kwargs = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        kwargs["segments"] = [Segment(s["start"], s["end"], s["text"], tuple(Word(**w) for w in s.get("words", ())))
                              for s in data.get("segments", [])]
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; times rounded to milliseconds."""
        out = asdict(self)
        out["segments"] = [segment_dict(s) for s in self.segments]
        if out["duration"] is not None:
            out["duration"] = round(out["duration"], 3)
        if out["language_probability"] is not None:
            out["language_probability"] = round(out["language_probability"], 4)
        else:
            del out["language_probability"]  # only detected languages carry a probability
        return out


def segment_dict(seg: Segment) -> dict:
    """A segment as JSON: times in milliseconds' precision; words only where there are some."""
    out = {"start": round(seg.start, 3), "end": round(seg.end, 3), "text": seg.text}
    if seg.words:
        out["words"] = [{"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word,
                         "probability": round(w.probability, 4)} for w in seg.words]
    return out


@dataclass
class Decoded:
    """What a backend returns for one audio array."""
    segments: list[Segment]  # timed text, in order; [] for silence
    language: str | None  # code used for decoding; None for silence on a model that detects it
    language_probability: float | None  # set when the language was detected


def join_segments(segments: list[Segment]) -> str:
    """The transcript of a file: segment texts joined by a space, except between CJK characters."""
    text = ""
    for seg in segments:
        if not seg.text:
            continue
        if text and not joins_without_space(text, seg.text):
            text += " "
        text += seg.text
    return text


def clamped(timed, duration: float) -> list[Segment]:
    """(start, end, text) or (start, end, text, words) of each segment -> Segments inside
    [0, duration] with end >= start, their words too; segments with no text are dropped.
    Decoders' times can run past the audio's end."""
    out = []
    for start, end, text, *words in timed:
        if text:
            start, end = _clamp(start, end, duration)
            words = tuple(Word(*_clamp(w.start, w.end, duration), w.word, float(w.probability))
                          for w in (words[0] if words else ()))
            out.append(Segment(start, end, text, words))
    return out


def moved(segments: list[Segment], offset: float, duration: float) -> list[Segment]:
    """Segments (and their words) moved by offset seconds onto another timeline, such as a piece's
    onto its file's or a packed window's onto a clip's (negative offset), clamped to [0, duration]."""
    return clamped(((s.start + offset, s.end + offset, s.text,
                     [Word(w.start + offset, w.end + offset, w.word, w.probability) for w in s.words])
                    for s in segments), duration)


def _clamp(start: float, end: float, duration: float) -> tuple[float, float]:
    start = min(max(float(start), 0.0), duration)
    return start, max(start, min(float(end), duration))


def timed_pieces(tokens: list[int], timestamp_begin: int, first_special: int,
                 duration: float) -> list[tuple[float, float, list[int]]]:
    """Whisper output '<|t0|> text <|t1|><|t1|> text <|t2|>' -> (start, end, text token ids) of
    each stretch of text, times clamped to duration.

    Ids >= timestamp_begin are timestamps; ids in [first_special, timestamp_begin) are other
    special tokens (end of text, language, task) and are dropped. A text after the last
    timestamp (the decoding stopped before closing it) ends at `duration`."""
    pieces = []
    start, text_ids = 0.0, []
    for tok in tokens:
        if tok >= timestamp_begin:
            t = min((tok - timestamp_begin) * TIME_PRECISION, duration)
            if text_ids:
                pieces.append((start, max(start, t), text_ids))
                text_ids = []
            start = t
        elif tok < first_special:
            text_ids.append(tok)
    if text_ids:
        pieces.append((start, max(start, duration), text_ids))
    return pieces


def pieces_to_segments(pieces: list[tuple[float, float, list[int]]], decode, duration: float) -> list[Segment]:
    """(start, end, text token ids) -> Segments, decoded with decode(ids) -> str and clamped;
    pieces with no text are dropped."""
    return clamped(((a, b, decode(ids).strip()) for a, b, ids in pieces), duration)


def split_timestamped(tokens: list[int], timestamp_begin: int, first_special: int, decode,
                      duration: float) -> list[Segment]:
    """Whisper output -> Segments (timed_pieces, then pieces_to_segments)."""
    return pieces_to_segments(timed_pieces(tokens, timestamp_begin, first_special, duration), decode, duration)


@dataclass
class RunSummary:
    results: list[FileResult]
    audio_seconds: float  # total duration of the files transcribed
    wall_seconds: float  # time spent decoding, model loading excluded

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def describe(self) -> str:
        n, bad = len(self.results), self.failed
        lines = [f"transcribed {n - len(bad)} of {n} files: {self.audio_seconds:.1f} s of audio in "
                 f"{self.wall_seconds:.1f} s ({self.realtime_factor:.1f}x realtime)"]
        if bad:
            lines.append(f"{len(bad)} failed:")
            lines += [f"  {r.path}: {r.error}" for r in bad]
        return "\n".join(lines)
