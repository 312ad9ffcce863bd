"""Training targets: a manifest row's text (and segments) as the label token ids Whisper learns.

A Whisper target is, in token terms (multilingual model; English-only models have no
language and task tokens):

    <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>  text  <|endoftext|>
    <|startoftranscript|> <|en|> <|transcribe|> <|0.00|> text <|1.84|> <|2.40|> text <|3.10|> <|endoftext|>

WhisperForConditionalGeneration builds its decoder input by shifting the labels right and
putting `decoder_start_token_id` (= <|startoftranscript|>) first. So the labels here start
*after* <|startoftranscript|>: were it kept, the decoder would see it twice. Labels are padded
with -100, which the loss ignores (and the shift turns into the pad token): dataset.Collator.

Text is tokenized with a leading space for languages written with spaces, because that is how
Whisper itself writes its transcripts (" The cat..."): training on "The cat..." would teach the
model a first token it never produced before.

Timestamps: a target with timestamp tokens uses the row's `segments`, else one segment over
its speech (found from the audio's energy). A share of targets is trained that way even without
--timestamps, so the model does not forget how to write timestamps (choices.DEFAULT_TIMESTAMP_SHARE).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .. import audio
from ..languages import NO_SPACE_LANGUAGES
from ..data.manifest import Row
from ..tokens import TIME_PRECISION, Tokens


@dataclass(frozen=True)
class LabelMaker:
    """Turns a row's text (and segments) into label ids for one model."""

    tokenizer: object  # the model's WhisperTokenizer
    tokens: Tokens
    task: str = "transcribe"

    def text_ids(self, text: str, language: str | None) -> list[int]:
        text = text.strip()
        if language not in NO_SPACE_LANGUAGES:
            text = " " + text
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def labels(self, text: str, language: str | None, segments: list[dict] | None = None,
               timestamps: bool = False) -> list[int]:
        """Label ids: the prefix without <|startoftranscript|>, the text, <|endoftext|>.

        timestamps=True needs `segments` ([{"start", "end", "text"}], seconds)."""
        prefix = self.tokens.prefix(language, self.task, timestamps)
        if not timestamps:
            body = self.text_ids(text, language)
        else:
            if not segments:
                raise ValueError("a timestamped target needs segments")
            body = []
            for seg in segments:
                body.append(self.tokens.timestamp(seg["start"]))
                body += self.text_ids(seg["text"], language)
                body.append(self.tokens.timestamp(seg["end"]))
        return prefix[1:] + body + [self.tokens.end]

    def longest_labels(self, row: Row, language: str | None) -> int:
        """Length of the row's longer target: timestamped (2 tokens per segment) or not."""
        plain = len(self.labels(row.text, language))
        segments = row.segments or [{"start": 0.0, "end": 0.0, "text": row.text}]
        return max(plain, len(self.labels(row.text, language, segments, timestamps=True)))


def speech_span(samples: np.ndarray, sample_rate: int = audio.SAMPLE_RATE) -> tuple[float, float]:
    """(start, end) in seconds of the part of a clip louder than silence, on the 0.02 s grid.

    Frame energy over 20 ms frames against a threshold relative to the loudest frame; a clip
    that is all silence gives its whole length."""
    frame = int(TIME_PRECISION * sample_rate)
    n = len(samples) // frame
    if n == 0:
        return 0.0, round(len(samples) / sample_rate, 2)
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > max(rms.max() * 0.05, 1e-4))
    if len(loud) == 0:
        return 0.0, n * TIME_PRECISION
    start = loud[0] * TIME_PRECISION
    end = min((loud[-1] + 1) * TIME_PRECISION, len(samples) / sample_rate)
    return round(start, 2), round(end, 2)


def own_segments(samples: np.ndarray, row: Row) -> list[dict]:
    """The row's segments, else one segment over its speech."""
    if row.segments:
        return row.segments
    begin, end = speech_span(samples)
    return [{"start": begin, "end": end, "text": row.text}]


def row_language(row: Row, default: str | None, multilingual: bool) -> str | None:
    """A row's own language wins over --language; English-only models take no language token."""
    if not multilingual:
        return "en"
    return row.language or default


def timestamped_rows(rows: list[Row], share: float, seed: int) -> frozenset[int]:
    """Indices of the rows whose target carries timestamps: round(share * rows) of them, drawn
    from the seed, so every process and a resumed run pick the same ones."""
    order = list(range(len(rows)))
    random.Random(f"{seed}|timestamps").shuffle(order)
    return frozenset(order[:round(share * len(rows))])
