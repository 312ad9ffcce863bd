"""Training on a streamed Hugging Face dataset (--streaming): for sets too big for the disk.

A stream cannot be checked before training starts, so each example is checked as it arrives,
by the rules a manifest row meets (data/manifest.py's keys and text, then audio that decodes, fits
--max_duration_in_seconds and gives a label the decoder holds); a bad example is skipped, the
first few are logged by row number and reason, and the count is logged every so often. Items are
those SpeechDataset makes, so the collator and clip packing work unchanged. Which examples carry
timestamp targets is drawn per row number from the seed, as timestamped_rows does for a list.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from .. import audio
from ..errors import AudioError
from ..data.hf_data import LANGUAGE_COLUMNS, entry_of, open_split, text_column_of
from ..data.manifest import rows_from_entries
from .dataset import SHOWN_DROPPED_ROWS, SpeechDataset
from .labels import LabelMaker, row_language

log = logging.getLogger(__name__)

DROP_LOG_EVERY = 1000  # skipped examples between two counts in the log


class StreamingSpeechDataset(torch.utils.data.IterableDataset):
    def __init__(self, source: str, split: str, processor, labels: LabelMaker, language: str | None, *,
                 config: str | None, audio_column: str, text_column: str | None, share: float, seed: int,
                 max_seconds: float, min_seconds: float, max_label_length: int, raw: bool,
                 cache_dir: str | None = None):
        self.source, self.split, self.config, self.cache_dir = source, split, config, cache_dir
        self.audio_column, self.text_column = audio_column, text_column
        self.processor, self.label_maker, self.language = processor, labels, language
        self.share, self.seed = share, seed
        self.max_seconds, self.min_seconds, self.max_label_length = max_seconds, min_seconds, max_label_length
        self.raw = raw
        self.languages: list[str] = []  # unknown before the stream is read; train.py uses --language
        self.timestamped: frozenset[int] = frozenset()
        self.dropped = 0
        # Opened here once, so a wrong name, split or column fails before the model trains.
        data = self._open()
        self.text_col = text_column_of(list(data.column_names or data.features), text_column, f"{source}[{split}]")

    def _open(self):
        return open_split(self.source, self.split, self.config, self.audio_column, streaming=True,
                          cache_dir=self.cache_dir)

    def __iter__(self):
        data = self._open()
        info = torch.utils.data.get_worker_info()
        columns = list(data.column_names or data.features)
        lang_col = next((c for c in LANGUAGE_COLUMNS if c in columns), None)
        for number, example in enumerate(data, start=1):
            # datasets hands each DataLoader worker its own shards; numbers count within them.
            item = self._item(number, entry_of(example, self.audio_column, self.text_col, lang_col),
                              example[self.audio_column] or {})
            if item is not None:
                yield item
        if info is None or info.id == 0:
            log.info("%s[%s]: the stream ended; %d examples skipped", self.source, self.split, self.dropped)

    def _item(self, number: int, entry: dict, value: dict) -> dict | None:
        rows, problems = rows_from_entries([(number, entry)], Path.cwd())
        if not rows:
            return self._drop(number, "; ".join(p.reason for p in problems if not p.warning))
        row = rows[0]
        try:
            if value.get("bytes"):
                samples = audio.load_audio_bytes(value["bytes"], name=value.get("path") or f"row {number}")
            else:
                samples = audio.load_audio(value.get("path") or "")
        except AudioError as exc:
            return self._drop(number, getattr(exc, "reason", str(exc)))
        seconds = len(samples) / audio.SAMPLE_RATE
        if not self.min_seconds <= seconds <= self.max_seconds:
            return self._drop(number, f"audio is {seconds:.1f} s long, outside {self.min_seconds:g}-"
                                      f"{self.max_seconds:g} s")
        language = row_language(row, self.language, self.label_maker.tokens.multilingual)
        if language is None:
            return self._drop(number, "no \"language\" and --language is not given; a multilingual model needs it")
        if self.label_maker.longest_labels(row, language) > self.max_label_length:
            return self._drop(number, f"label is over --max_label_length {self.max_label_length} tokens")
        timestamped = random.Random(f"{self.seed}|timestamps|{number}").random() < self.share
        one = SpeechDataset([row], self.processor, self.label_maker, self.language,
                            frozenset([0]) if timestamped else frozenset(), raw=self.raw,
                            max_label_length=self.max_label_length, audio_loader=lambda _: samples)
        item = one[0]
        item["index"] = -1  # no stable index in a stream (the frozen-encoder cache is not used with it)
        return item

    def _drop(self, number: int, reason: str) -> None:
        self.dropped += 1
        if self.dropped <= SHOWN_DROPPED_ROWS:
            log.warning("%s[%s] row %d skipped: %s", self.source, self.split, number, reason)
        elif self.dropped % DROP_LOG_EVERY == 0:
            log.warning("%s[%s]: %d examples skipped so far", self.source, self.split, self.dropped)
        return None
