"""Whisper's token protocol: the special tokens of a model and the timestamp grid.

A 30-second window (audio.CHUNK_LENGTH) is 1500 encoder frames; a timestamp token marks one of
them every other frame, so <|0.00|>, <|0.02|>, ... <|30.00|> are 1501 tokens 0.02 s apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .audio import CHUNK_LENGTH
from .errors import OptionsError

TIME_PRECISION = 0.02  # seconds per timestamp token step
N_TIMESTAMPS = round(CHUNK_LENGTH / TIME_PRECISION) + 1  # 1501: <|0.00|> .. <|30.00|>
IGNORE_INDEX = -100  # label value the cross-entropy loss skips


@dataclass(frozen=True)
class Tokens:
    """The special token ids of one model, read from its generation config."""

    start: int  # <|startoftranscript|>: the decoder start token, never part of the labels
    end: int  # <|endoftext|>
    no_timestamps: int  # <|notimestamps|>
    timestamp_begin: int  # <|0.00|>; <|t|> is timestamp_begin + round(t / TIME_PRECISION)
    multilingual: bool  # True: the prefix carries language and task tokens
    lang_to_id: dict = field(default_factory=dict)  # "<|en|>" -> id (multilingual models)
    task_to_id: dict = field(default_factory=dict)  # "transcribe" -> id (multilingual models)

    @classmethod
    def of(cls, model) -> Tokens:
        gen = model.generation_config
        start = model.config.decoder_start_token_id
        if getattr(gen, "no_timestamps_token_id", None) is None:
            raise OptionsError("the model's generation config has no <|notimestamps|> id: it cannot be "
                               "fine-tuned here; load it with whisper_lora.load_model")
        multilingual = bool(getattr(gen, "is_multilingual", bool(getattr(gen, "lang_to_id", None))))
        return cls(start=start, end=gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0],
                   no_timestamps=gen.no_timestamps_token_id, timestamp_begin=gen.no_timestamps_token_id + 1,
                   multilingual=multilingual, lang_to_id=dict(getattr(gen, "lang_to_id", None) or {}),
                   task_to_id=dict(getattr(gen, "task_to_id", None) or {}))

    def timestamp(self, seconds: float) -> int:
        step = int(round(min(max(seconds, 0.0), CHUNK_LENGTH) / TIME_PRECISION))
        return self.timestamp_begin + step

    def prefix(self, language: str | None, task: str, timestamps: bool) -> list[int]:
        """<|startoftranscript|> [<|lang|> <|task|>] [<|notimestamps|>]."""
        ids = [self.start]
        if self.multilingual:
            lang = self.lang_to_id.get(f"<|{language}|>")
            if lang is None:
                raise OptionsError(f"language {language!r} has no token in this model; use a Whisper code such as en, zh")
            ids += [lang, self.task_to_id[task]]
        if not timestamps:
            ids.append(self.no_timestamps)
        return ids
