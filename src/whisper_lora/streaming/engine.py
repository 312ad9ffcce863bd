"""One live stream: a growing buffer decoded again and again, and the words of it that are final.

Two rules decide when a word is final, and the stream can use either or both (`policy`):
  - agreement: LocalAgreement-2 (Macháček et al. 2023, whisper_streaming): the words after the
    last final one that two successive decodes of the growing buffer agree on are final.
  - turns: when Silero VAD hears `turn_silence` of quiet after speech, the turn is over: the
    buffer up to the end of the speech is decoded once more and all of its words are final.
A word decoded once is a partial: shown, but it may still change.

Decoding happens outside: `take()` gives the audio to decode (or None), the caller decodes it
(alone, or batched with other streams' buffers) and hands the result to `update()`, which
returns the events. The stream only ever has one decode in flight, and audio appended meanwhile
waits for the next one. Decodes are cut at multiples of `chunk` of stream time, so the same
audio decoded at real-time pace by a caller that keeps up gives the same text every time.

The buffer holds the audio since the last cut. It is cut at the end of a turn and, in long turns,
at the end of a decoded segment whose words are all final once the buffer is over `trim`, so the
cost of a decode stays flat over an hour-long stream. A buffer that reaches `max_buffer` (Whisper
hears 30 s at most) ends its turn there.

One module for one job, a stream's state and its policy: the buffer, the agreement and the
turns decide together when a word is final, so they are read together (over 300 lines).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import OptionsError

POLICIES = ("both", "agreement", "turns")
VAD_PAD_MS = 100  # a speech region's padding: the last sound's tail, not the pause after it
# Agreement waits for this much audio in the buffer: on a second or less Whisper guesses a turn's
# first words, and two short decodes agree on a wrong guess (benchmarks/stream_latency.py).
MIN_CONTEXT = 2.0
# A word agreed on must end this long before the decoded audio does: Whisper still changes a word
# the audio has barely left behind (0.3 and 0.6 s measured no better; benchmarks/stream_latency.py).
HOLD = 0.5
LEAD_IN = 0.3  # seconds of the quiet before a turn kept in the buffer: its first sound is not cut


def stream_vad(audio: np.ndarray) -> list[tuple[int, int]]:
    """Silero's speech regions, padded by VAD_PAD_MS only: the quiet after them is the turn's end."""
    from ..decoding.vad import speech_regions

    return speech_regions(audio, pad_ms=VAD_PAD_MS)


@dataclass(frozen=True)
class StreamOptions:
    policy: str = "both"
    chunk: float = 1.0  # seconds of new audio between decodes
    agree: int = 2  # LocalAgreement-n: a word is final once this many successive decodes agree on it
    turn_silence: float = 0.5  # seconds of quiet after speech that end a turn (policies with turns)
    trim: float = 15.0  # a longer buffer is cut at the end of a final segment
    max_buffer: float = 25.0  # a buffer this long ends its turn

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise OptionsError(f"--policy {self.policy!r}: use one of {', '.join(POLICIES)}")
        if not 0.1 <= self.chunk <= 10:
            raise OptionsError(f"--chunk {self.chunk}: use 0.1 to 10 seconds")
        if not 1 <= self.agree <= 5:
            raise OptionsError(f"--agree {self.agree}: use 1 to 5 decodes")
        if not 0.1 <= self.turn_silence <= 10:
            raise OptionsError(f"--turn_silence {self.turn_silence}: use 0.1 to 10 seconds")
        if not self.chunk < self.trim < self.max_buffer <= 29.0:
            raise OptionsError(f"trim {self.trim} s and max_buffer {self.max_buffer} s: need "
                               f"chunk < trim < max_buffer <= 29 s")

    @property
    def turns(self) -> bool:
        return self.policy in ("both", "turns")

    @property
    def agreement(self) -> bool:
        return self.policy in ("both", "agreement")


@dataclass(frozen=True)
class Final:
    """Words that never change, with their times in stream time (seconds from the stream's start)."""
    text: str
    start: float
    end: float
    turn: int  # 0, 1, ...: the turn the words belong to


@dataclass(frozen=True)
class Partial:
    """The words after the last final ones as last decoded: they may still change ("" clears them)."""
    text: str
    turn: int


@dataclass(frozen=True)
class TurnEnd:
    """A turn is over; text: all of its final words (the OpenAI item's transcript)."""
    text: str
    start: float
    end: float
    turn: int


def event_json(event) -> dict:
    """An event as /v1/stream sends it and `whisper-lora stream --jsonl` prints it."""
    if isinstance(event, Partial):
        return {"type": "partial", "text": event.text, "turn": event.turn}
    kind = {Final: "final", TurnEnd: "turn"}[type(event)]
    return {"type": kind, "text": event.text, "start": event.start, "end": event.end, "turn": event.turn}


@dataclass(frozen=True)
class _Word:
    text: str  # as decoded, without surrounding spaces
    start: float  # stream time; inside a segment, shared out by characters
    end: float

    @property
    def key(self) -> str:
        return _key(self.text)


def _key(text: str) -> str:
    """What two decodes must agree on: the word without case and punctuation."""
    return re.sub(r"[^\w']", "", text.lower()) or text


@dataclass
class _Pending:
    upto: int  # buffer samples handed to the decoder
    turn_end: bool  # the decode ends the turn at upto
    discard: bool = False  # the buffer was cleared meanwhile


class Stream:
    """take() -> decode -> update(result) -> events; append() and finish() around them."""

    def __init__(self, options: StreamOptions | None = None,
                 vad: Callable[[np.ndarray], list[tuple[int, int]]] | None = None):
        self.options = options or StreamOptions()
        if self.options.turns and vad is None:
            vad = stream_vad
        self.vad = vad
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset = 0  # stream sample of buffer[0]
        self.received = 0  # samples appended in all
        self.decoded = 0  # stream sample up to which the last decode heard
        self.final_in_buffer: list[_Word] = []  # final words of the buffer's audio, as last decoded
        self.previous: list[list[_Word]] = []  # the last decodes' words after the final ones, oldest first
        self.turn = 0
        self.turn_text: list[str] = []
        self.turn_start: float | None = None
        self.turn_end_time = 0.0
        self.pending: _Pending | None = None
        self.finished = False
        self.closed = False  # finished, and the last decode done
        self.commit_asked = False  # the client ended the turn (OpenAI's input_audio_buffer.commit)

    @property
    def seconds(self) -> float:
        return self.received / SAMPLE_RATE

    def append(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, audio])
        self.received += len(audio)

    def ready(self) -> bool:
        """Whether take() would give audio now: a chunk boundary passed since the last decode."""
        if self.pending is not None or self.closed:
            return False
        return self.finished or (self.commit_asked and len(self.buffer) > 0) or self._boundary() > self.decoded

    def _boundary(self) -> int:
        chunk = int(self.options.chunk * SAMPLE_RATE)
        if self.finished or self.commit_asked:
            return self.received
        return self.received // chunk * chunk

    def take(self) -> np.ndarray | None:
        """The buffer to decode now, or None (nothing new, no speech, or a decode in flight)."""
        if not self.ready():
            return None
        upto = self._boundary() - self.offset
        self.decoded = self.offset + upto
        turn_end = self.finished or self.commit_asked or upto >= self.options.max_buffer * SAMPLE_RATE
        self.commit_asked = False
        if self.options.turns:
            regions = self.vad(self.buffer[:upto])
            if regions:
                # The first pause long enough ends the turn, wherever it lies: a caller that fell
                # behind (or a pipe read all at once) hands over several turns in one buffer.
                quiet = self.options.turn_silence * SAMPLE_RATE
                starts = [start for start, _ in regions[1:]] + [upto]
                for (_, speech_end), next_start in zip(regions, starts):
                    if next_start - speech_end >= quiet:
                        if next_start < upto:  # the next turn's speech is here already: decode it next
                            self.decoded = self.offset + speech_end
                        upto, turn_end = speech_end, True
                        break
            elif not (self.final_in_buffer or any(self.previous)):
                self._drop_quiet(upto)
                self.closed = self.finished
                return None
        if upto <= 0:
            self.closed = self.finished
            return None
        self.pending = _Pending(upto, turn_end)
        return self.buffer[:upto].copy()

    def _drop_quiet(self, upto: int) -> None:
        """A buffer without speech: keep only its last LEAD_IN seconds (a turn may start there)."""
        cut = max(0, upto - int(LEAD_IN * SAMPLE_RATE))
        self._cut(cut)

    def update(self, segments) -> list:
        """Events for the decode of take()'s audio; segments: its Segments (times in the buffer)."""
        pending, self.pending = self.pending, None
        assert pending is not None, "update() without take()"
        if pending.discard:
            return [Partial("", self.turn)]
        words, ends = self._words(segments, pending.upto)
        start = self._after_final(words)
        new = words[start:]
        events: list = []
        if pending.turn_end:
            events += self._commit(new)
            events += self._end_turn()
            self._cut(pending.upto)
            self.closed = self.finished and not len(self.buffer)
            return events
        agreed = 0
        if (self.options.agreement and len(self.previous) >= self.options.agree - 1
                and pending.upto >= MIN_CONTEXT * SAMPLE_RATE):
            # The last word is left out: it is often the one the buffer cuts in two, and two
            # decodes half a second apart guess it alike.
            heard = (self.offset + pending.upto) / SAMPLE_RATE
            while (agreed < len(new) - 1 and new[agreed].end <= heard - HOLD
                   and all(agreed < len(p) and p[agreed].key == new[agreed].key for p in self.previous)):
                agreed += 1
            events += self._commit(new[:agreed])
            new = new[agreed:]
        keep = self.options.agree - 1
        self.previous = ([p[agreed:] for p in self.previous] + [new])[-keep:] if keep else []
        events.append(Partial(" ".join(w.text for w in new), self.turn))
        if self.buffer_seconds(pending.upto) > self.options.trim:
            self._trim(words, ends, start + agreed)
        return events

    def finish(self) -> None:
        """The stream has ended: the next take() gives the rest of the buffer, ending the turn."""
        self.finished = True

    def end_turn(self) -> None:
        """End the turn at the audio received so far (the next take() gives it all)."""
        self.commit_asked = True

    def clear(self) -> None:
        """Forget the audio not yet final, and its partial words."""
        self._cut(len(self.buffer))
        self.previous, self.final_in_buffer = [], []
        self.decoded = self.received
        if self.pending is not None:
            self.pending.discard = True

    @property
    def done(self) -> bool:
        """Finished and nothing left to decode."""
        return self.closed

    def buffer_seconds(self, samples: int | None = None) -> float:
        return (len(self.buffer) if samples is None else samples) / SAMPLE_RATE

    def _words(self, segments, upto: int) -> tuple[list[_Word], list[int]]:
        """The decode's words in stream time, and after which word each segment ends."""
        base, limit = self.offset / SAMPLE_RATE, upto / SAMPLE_RATE
        words: list[_Word] = []
        ends: list[int] = []
        for seg in segments:
            texts = seg.text.split()
            if not texts:
                continue
            a, b = min(seg.start, limit), min(max(seg.end, seg.start), limit)
            total = sum(len(t) for t in texts)
            done = 0
            for t in texts:
                w0 = a + (b - a) * done / total
                done += len(t)
                words.append(_Word(t, base + w0, base + a + (b - a) * done / total))
            ends.append(len(words))
        return words, ends

    def _after_final(self, words: list[_Word]) -> int:
        """Where the decode's words go past the final words it heard again (spelled the same or not)."""
        final = [w.key for w in self.final_in_buffer]
        if not final:
            return 0
        keys = [w.key for w in words]
        if keys[:len(final)] == final:
            return len(final)
        matcher = difflib.SequenceMatcher(None, final, keys[:len(final) + 4], autojunk=False)
        blocks = [m for m in matcher.get_matching_blocks() if m.size]
        if not blocks:
            return min(len(final), len(words))
        last = blocks[-1]
        return min(len(words), last.b + last.size + (len(final) - last.a - last.size))

    def _commit(self, words: list[_Word]) -> list:
        if not words:
            return []
        self.final_in_buffer += words
        text = " ".join(w.text for w in words)
        self.turn_text.append(text)
        if self.turn_start is None:
            self.turn_start = words[0].start
        self.turn_end_time = words[-1].end
        return [Final(text, round(words[0].start, 3), round(words[-1].end, 3), self.turn)]

    def _end_turn(self) -> list:
        events = [Partial("", self.turn)]
        if self.turn_text:
            events.append(TurnEnd(" ".join(self.turn_text), round(self.turn_start, 3),
                                  round(self.turn_end_time, 3), self.turn))
            self.turn += 1
        self.turn_text, self.turn_start = [], None
        self.final_in_buffer, self.previous = [], []
        return events

    def _trim(self, words: list[_Word], ends: list[int], final: int) -> None:
        """Cut the buffer at the end of the last segment whose words are all final (the first
        `final` of this decode's words)."""
        usable = [n for n in ends if 0 < n <= final and n < len(words)]
        if not usable:
            return
        n = usable[-1]
        cut = int(round(words[n - 1].end * SAMPLE_RATE)) - self.offset
        if cut <= 0:
            return
        # The final words still in the buffer are those after the cut, as this decode spelled them.
        self.final_in_buffer = words[n:final]
        self._cut(cut)

    def _cut(self, samples: int) -> None:
        samples = max(0, min(samples, len(self.buffer)))
        self.buffer = self.buffer[samples:]
        self.offset += samples
