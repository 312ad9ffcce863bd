"""From manifest rows to what the model trains on: the data set, its collator, and the rows kept.

SpeechDataset reads a row's audio when an item is asked for and turns it into log-mel features
and label ids (labels.LabelMaker); timestamped items may join a few utterances with pauses.
Collator stacks a batch (after packing it into shared windows: packing.WindowPacker).
usable_rows reads a manifest and drops, with a report, the rows training cannot use.

One module for one job, rows to batches: the data set and its collator agree on the item's
shape (over 300 lines).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import audio
from ..errors import ManifestError, OptionsError
from ..data.manifest import Row
from ..data.validation import ValidationReport, format_report, validate_manifest
from ..tokens import IGNORE_INDEX
from .augment import Augment
from .labels import LabelMaker, own_segments, row_language

log = logging.getLogger(__name__)

SHOWN_DROPPED_ROWS = 10  # rows listed by name in a drop report; the rest are counted


class SpeechDataset:
    """Map-style dataset: item i is row i's features (80 or 128 x 3000 log-mel) and labels.

    Audio is decoded when an item is read, so memory stays flat on large sets and DataLoader
    workers (--num_workers) overlap decoding with training.

    With join=True, a timestamped item is row i joined with up to two other rows of the same
    language, pauses between them, one segment per utterance. Trained only on single clips with
    one segment each, the model learns that audio is one segment, and on longer audio it stops
    splitting at pauses (measured: 6 of 10 joined test pairs still split after 1 epoch on 240
    clips, against 10 of 10 before training); joined items keep it splitting where speech pauses."""

    def __init__(self, rows: list[Row], processor, labels: LabelMaker, language: str | None,
                 timestamped: frozenset[int] = frozenset(), join: bool = False, seed: int = 0,
                 max_label_length: int = 448, raw: bool = False,
                 audio_loader: Callable[[Row], np.ndarray] | None = None, augment: Augment | None = None,
                 prompts: Callable[[int, int], list[str] | None] | None = None):
        self.rows = rows
        # training/prompt_terms.PromptTerms for glossary-aware training: each item's prompt terms
        self.prompts = prompts
        self._prompt_reads: dict[int, int] = {}
        # Row -> 16 kHz samples: a file's (load_row_audio), or a dataset's own bytes (hf_data.DatasetAudio).
        self.load = audio_loader or load_row_audio
        self.feature_extractor = processor.feature_extractor
        self.label_maker = labels
        self.languages = [row_language(r, language, labels.tokens.multilingual) for r in rows]
        self.timestamped = timestamped
        self.join = join
        self.seed = seed
        self.max_label_length = max_label_length
        self.raw = raw  # items carry audio, text and segments; packing.WindowPacker makes the rest
        self.augment = augment if augment is not None and augment.active else None  # training sets only
        self._reads: dict[int, int] = {}  # item -> times read, so each epoch augments it anew
        self._same_language: dict = {}
        for j, lang in enumerate(self.languages):
            self._same_language.setdefault(lang, []).append(j)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        item = self._get(i)
        if self.prompts is not None:  # drawn anew at each read, so each epoch lists other terms
            draw = self._prompt_reads[i] = self._prompt_reads.get(i, -1) + 1
            item["prompt"] = self.prompts(i, draw)
        return item

    def _get(self, i: int) -> dict:
        row, language = self.rows[i], self.languages[i]
        samples = self._audio(i)
        if self.raw:  # packed later; the window decides whether its target has timestamps
            item = self._item(i, samples, language, row.text, own_segments(samples, row))
            return {**item, "timestamped": i in self.timestamped}
        if i not in self.timestamped:
            return self._item(i, samples, language, row.text)
        parts = [(samples, row)]
        rng = random.Random(f"{self.seed}|join|{i}")
        if self.join:
            others = [j for j in self._same_language[language] if j != i]
            for j in rng.sample(others, min(rng.randint(0, MAX_JOINED - 1), len(others))):
                parts.append((self._audio(j), self.rows[j]))
            rng.shuffle(parts)
        while True:
            joined, segments = _join(parts, rng)
            labels = self.label_maker.labels(row.text, language, segments, timestamps=True)
            if len(parts) == 1 or (len(joined) <= audio.N_SAMPLES and len(labels) <= self.max_label_length):
                return self._item(i, joined, language, row.text, segments, labels)
            # Too long for one window or for the decoder: one utterance fewer, never row i itself.
            drop = max(k for k, (_, r) in enumerate(parts) if r is not row)
            parts = parts[:drop] + parts[drop + 1:]

    def _audio(self, i: int) -> np.ndarray:
        samples = self.load(self.rows[i])
        if self.augment is None:
            return samples
        draw = self._reads[i] = self._reads.get(i, -1) + 1
        return self.augment(samples, i, draw, has_segments=self.rows[i].segments is not None)

    def _item(self, i: int, samples: np.ndarray, language: str | None, text: str,
              segments: list[dict] | None = None, labels: list[int] | None = None) -> dict:
        if self.raw:
            return {"audio": samples, "text": text, "segments": segments, "language": language, "index": i}
        if labels is None:
            labels = self.label_maker.labels(text, language)
        features = self.feature_extractor(samples, sampling_rate=audio.SAMPLE_RATE,
                                          return_tensors="np").input_features[0]
        # index: the same i always gives the same item, so the trainer may cache its encoder output
        return {"input_features": features, "labels": labels, "language": language, "index": i}


def load_row_audio(row: Row) -> np.ndarray:
    return audio.load_audio(row.audio_path)


MAX_JOINED = 3  # utterances in one joined timestamped training item
PAUSE_SECONDS = (0.3, 1.2)  # silence between joined utterances, drawn uniformly


def _join(parts: list[tuple[np.ndarray, Row]], rng: random.Random) -> tuple[np.ndarray, list[dict]]:
    """Concatenate clips with pauses; each contributes its own segments (or one over its speech),
    moved to where it starts in the joined audio."""
    joined, starts = concat_with_pauses([samples for samples, _ in parts], rng)
    segments = [{"start": start + s["start"], "end": start + s["end"], "text": s["text"]}
                for (samples, row), start in zip(parts, starts) for s in own_segments(samples, row)]
    return joined, segments


def concat_with_pauses(clips: list[np.ndarray], rng: random.Random | None = None,
                       pauses: list[float] | None = None) -> tuple[np.ndarray, list[float]]:
    """Clips one after another with silence between them, `pauses` (seconds, one per gap) or drawn
    from PAUSE_SECONDS: (audio, start of each, s)."""
    if pauses is None:
        pauses = [rng.uniform(*PAUSE_SECONDS) for _ in clips[1:]]
    starts, _ = clip_starts([len(samples) for samples in clips], pauses)
    pieces = [clips[0]]
    for seconds, samples in zip(pauses, clips[1:]):
        pieces += [np.zeros(int(seconds * audio.SAMPLE_RATE), np.float32), samples]
    return np.concatenate(pieces), starts


def clip_starts(lengths: list[int], pauses: list[float]) -> tuple[list[float], int]:
    """Where each of clips `lengths` samples long starts (s) when `pauses` (s, one per gap) lie
    between them, and the samples of the whole: concat_with_pauses's layout without the audio."""
    starts, offset = [], 0
    for k, length in enumerate(lengths):
        if k:
            offset += int(pauses[k - 1] * audio.SAMPLE_RATE)
        starts.append(offset / audio.SAMPLE_RATE)
        offset += length
    return starts, offset


@dataclass
class Collator:
    """Stacks features and pads labels with -100 to the longest in the batch.

    `language` (one code per clip) rides along for evaluation, which forces it on the decoder,
    and `index` (dataset index per clip) for the encoder cache; the trainer takes both out before
    the model's forward pass."""

    decoder_start_token_id: int
    # Turns items that carry raw audio (SpeechDataset(raw=True)) into packed windows with
    # features and labels (packing.WindowPacker); None: items come with features.
    packer: Callable[[list[dict]], list[dict]] | None = None
    # Glossary-aware training: (terms, room) -> <|startofprev|> + the prompt's tokens, at most
    # `room` long (prompt_token_ids). Items with a "prompt" then decode after it (with_prompts).
    prompt_ids: Callable[[list[str], int], list[int]] | None = None
    max_positions: int = 448  # the decoder's positions: prompt and labels together
    pad_token_id: int = 50257

    def __call__(self, items: list[dict]) -> dict:
        import torch

        if self.packer is not None and "audio" in items[0]:
            items = self.packer(items)
        if self.prompt_ids is not None and any(it.get("prompt") for it in items):
            return self.with_prompts(items)
        features = torch.from_numpy(np.stack([it["input_features"] for it in items]).astype(np.float32))
        width = max(len(it["labels"]) for it in items)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for j, it in enumerate(items):
            ids = it["labels"]
            if ids and ids[0] == self.decoder_start_token_id:
                ids = ids[1:]  # the model puts it back in front: never twice
            labels[j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"input_features": features, "labels": labels, "language": [it["language"] for it in items],
                "index": [it.get("index", -1) for it in items]}

    def with_prompts(self, items: list[dict]) -> dict:
        """The batch with explicit decoder inputs: a prompted row reads <|startofprev|> terms
        <|startoftranscript|> ... and is scored only from <|startoftranscript|> on (its prompt
        positions, and the one that predicts <|startoftranscript|>, carry label -100); a row
        without a prompt reads <|startoftranscript|> + its labels shifted right, the decoder
        input Whisper would build from the labels itself, so its loss is unchanged."""
        import torch

        rows = []
        for it in items:
            ids = list(it["labels"])
            if ids and ids[0] == self.decoder_start_token_id:
                ids = ids[1:]
            prompt = self.prompt_ids(it["prompt"], self.max_positions - len(ids) - 1) if it.get("prompt") else []
            rows.append((prompt + [self.decoder_start_token_id] + ids[:-1], [IGNORE_INDEX] * len(prompt) + ids))
        width = max(len(d) for d, _ in rows)
        inputs = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for j, (d, lab) in enumerate(rows):  # padded on the right: the causal decoder never reads it
            inputs[j, :len(d)] = torch.tensor(d, dtype=torch.long)
            labels[j, :len(lab)] = torch.tensor(lab, dtype=torch.long)
        features = torch.from_numpy(np.stack([it["input_features"] for it in items]).astype(np.float32))
        return {"input_features": features, "labels": labels, "decoder_input_ids": inputs,
                "language": [it["language"] for it in items], "index": [it.get("index", -1) for it in items]}


def prompt_token_ids(tokenizer, terms: list[str], room: int) -> list[int]:
    """<|startofprev|> + the prompt listing `terms` as decoding writes it, the last terms dropped
    until it is at most `room` tokens long ([] when not even one fits)."""
    from ..data.glossary import PROMPT_TOKENS, prompt_text

    terms = list(terms)
    room = min(room, PROMPT_TOKENS + 1)
    while terms:
        ids = [tokenizer.convert_tokens_to_ids("<|startofprev|>")] + tokenizer.encode(
            " " + prompt_text(terms), add_special_tokens=False)
        if len(ids) <= room:
            return ids
        terms.pop()
    return []


@dataclass
class DataReport:
    """What became of a manifest's rows before training."""

    manifest: str
    rows: int  # rows in the file
    kept: int  # rows used (after max_samples)
    dropped: list[tuple[int | None, str]] = field(default_factory=list)  # (row number, reason)

    def as_dict(self) -> dict:
        return {"manifest": self.manifest, "rows": self.rows, "kept": self.kept, "dropped": len(self.dropped),
                "dropped_rows": [{"row": n, "reason": r} for n, r in self.dropped]}

    def summary(self) -> str:
        if not self.dropped:
            return f"{self.manifest}: {self.kept} of {self.rows} rows used"
        reasons: dict[str, int] = {}
        for _, reason in self.dropped:
            key = reason.split(":")[0].split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
        lines = [f"{self.manifest}: dropped {len(self.dropped)} of {self.rows} rows ("
                 + "; ".join(f"{n}x {why}" for why, n in reasons.items()) + "); first ones:"]
        lines += [f"  row {n}: {reason}" for n, reason in self.dropped[:SHOWN_DROPPED_ROWS]]
        if len(self.dropped) > SHOWN_DROPPED_ROWS:
            lines.append(f"  ... and {len(self.dropped) - SHOWN_DROPPED_ROWS} more (see training_config.json)")
        return "\n".join(lines)


def usable_rows(manifest: str, labels: LabelMaker, language: str | None, *, max_seconds: float,
                min_seconds: float = 0.0, max_label_length: int = 448, max_samples: int | None = None,
                strict: bool = False, report: ValidationReport | None = None) -> tuple[list[Row], DataReport]:
    """The rows of `manifest` training can use, and a report of the others.

    Dropped: rows manifest validation rejects (missing or undecodable audio, empty text, longer
    than max_seconds, duplicates, ...), clips shorter than min_seconds, labels longer than
    max_label_length. strict: any such row raises ManifestError. No row left raises too.
    report: rows already checked elsewhere (a Hugging Face dataset: hf_data.dataset_rows), named
    `manifest` in messages; None: the manifest file is read and validated here."""
    if report is None:
        report = validate_manifest(manifest, max_seconds=max_seconds, decode=True)
    if report.file_error:
        raise ManifestError(report.file_error)
    dropped = [(p.number, p.reason) for p in report.errors]
    multilingual = labels.tokens.multilingual
    unnamed = [r.number for r in report.good_rows if row_language(r, language, multilingual) is None]
    if unnamed:
        raise OptionsError(f"{manifest}: rows {_numbers(unnamed)} have no \"language\" and --language is not "
                           "given; a multilingual model needs the language of its training targets")
    kept = []
    lengths: dict[tuple, int] = {}  # (text, language) -> label length: large manifests repeat texts
    for row in report.good_rows:
        if row.duration is not None and row.duration < min_seconds:
            dropped.append((row.number, f"audio is {row.duration:.2f} s long, under --min_duration_in_seconds "
                                        f"{min_seconds:g}"))
            continue
        lang = row_language(row, language, multilingual)
        key = (row.text, lang) if row.segments is None else None
        length = lengths.get(key) if key else None
        if length is None:
            length = labels.longest_labels(row, lang)
            if key:
                lengths[key] = length
        if length > max_label_length:
            dropped.append((row.number, f"label is {length} tokens long, over --max_label_length "
                                        f"{max_label_length} (the decoder holds 448): shorten the text "
                                        "or split the clip"))
            continue
        kept.append(row)
    dropped.sort(key=lambda d: d[0] or 0)
    if strict and dropped:
        raise ManifestError(format_report(report) + "\n" + "\n".join(f"  row {n}: {r}" for n, r in dropped)
                            + "\n--strict: fix or remove every row listed above")
    if not kept:
        raise ManifestError(f"{manifest}: no usable rows ({len(dropped)} of {report.rows} dropped)\n"
                            + "\n".join(f"  row {n}: {r}" for n, r in dropped[:SHOWN_DROPPED_ROWS]))
    if max_samples is not None:
        kept = kept[:max_samples]
    data_report = DataReport(report.manifest, report.rows, len(kept), dropped)
    (log.warning if dropped else log.info)(data_report.summary())
    for p in report.warnings:
        log.warning("%s row %s: %s", report.manifest, p.number, p.reason)
    return kept, data_report


def _numbers(numbers: list[int], shown: int = 10) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")
