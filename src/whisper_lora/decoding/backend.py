"""What transcription asks of a backend: decode a batch of audio arrays, short or long.

Both backends, transformers (hf.py) and CTranslate2 (ct2.py), subclass Backend. Short audio goes
through the members written here, the same for both (packed into shared windows or in plain
batches, packing.py), down to each backend's decode_batch; long audio is each backend's own.
"""

from __future__ import annotations

import numpy as np

from . import packing
from .options import TranscribeOptions
from .results import Decoded


class Backend:
    """Decodes 16 kHz float32 arrays into one Decoded per array, in the order given."""

    name: str  # "hf" or "ct2", as written in a run's results
    options: TranscribeOptions  # settled for the model (TranscribeOptions.check_for_model)
    multilingual: bool  # the model detects languages and translates; False: English-only

    def decode_batch(self, audios: list[np.ndarray], timestamps: bool | None = None, retry: bool = True,
                     languages: list[str] | None = None, terms=None) -> tuple[list[Decoded], list[bool]]:
        """Audio of at most 30 s each, decoded together as one batch: (Decoded per audio, trouble per audio).

        timestamps: timed segments, or one segment over the whole audio; None: options.return_timestamps.
        languages: a code per audio, forced (no detection, no probability); None: options.language,
        or detected per audio. trouble: the text failed openai-whisper's guards (guards.verdict: a
        loop, unreliable, or cut off at the length limit). With retry such audio is decoded again
        with temperature fallback and trouble is all False; without, the caller decides (packing
        does: a window in trouble is not trusted). terms: glossary terms per audio (a list each,
        best first) put in its prompt after options.hotwords; None or empty lists: none."""
        raise NotImplementedError

    def decode_long(self, audios: list[np.ndarray], terms=None) -> list[Decoded]:
        """Audio over 30 s (any number of files): timed segments on each file's own timeline, in
        time order, and one language per file. terms: per file, (start, end, terms) spans of its
        timeline (TimedTerms), or None: each piece's prompt gets the terms of the spans it overlaps."""
        raise NotImplementedError

    def encode_text(self, text: str) -> list[int]:
        """The model's text tokens for `text`, without special tokens."""
        raise NotImplementedError

    @property
    def packing(self) -> bool:
        """Pack short clips into shared windows: asked for, and the language is known up front."""
        return self.options.pack and self.options.language is not None

    @property
    def files_per_call(self) -> int:
        """How many short files decode_short should get at once: a batch, or a batch of windows."""
        return self.options.batch_size * (packing.PACK_FACTOR if self.packing else 1)

    def decode_short(self, audios: list[np.ndarray], terms=None, pack: bool | None = None) -> list[Decoded]:
        """Audio of at most 30 s each (any number of files): batch_size at a time, or packed
        (pack None: as self.packing). terms: glossary terms per audio (best first), or None."""
        return packing.decode_short(audios, self.decode_batch, self.options, self.packing if pack is None else pack,
                                    terms)
