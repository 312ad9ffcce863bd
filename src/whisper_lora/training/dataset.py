"""From manifest rows to what the model trains on: log-mel features and label token ids.

A Whisper target is, in token terms (multilingual model; English-only models have no
language and task tokens):

    <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>  text  <|endoftext|>
    <|startoftranscript|> <|en|> <|transcribe|> <|0.00|> text <|1.84|> <|2.40|> text <|3.10|> <|endoftext|>

WhisperForConditionalGeneration builds its decoder input by shifting the labels right and
putting `decoder_start_token_id` (= <|startoftranscript|>) first. So the labels here start
*after* <|startoftranscript|>: were it kept, the decoder would see it twice. Labels are padded
with -100, which the loss ignores (and the shift turns into the pad token).

Text is tokenized with a leading space for languages written with spaces, because that is how
Whisper itself writes its transcripts (" The cat..."): training on "The cat..." would teach the
model a first token it never produced before.

Timestamps: a target with timestamp tokens uses the row's `segments`, else one segment over
its speech (found from the audio's energy). A share of targets is trained that way even without
--timestamps, so the model does not forget how to write timestamps (train_options.py).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import audio
from ..errors import ManifestError, OptionsError
from ..languages import NO_SPACE_LANGUAGES
from ..manifest import Row, format_report, validate_manifest
from ..tokens import IGNORE_INDEX, TIME_PRECISION, Tokens

log = logging.getLogger(__name__)

SHOWN_DROPPED_ROWS = 10  # rows listed by name in a drop report; the rest are counted


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
                 max_label_length: int = 448, raw: bool = False):
        self.rows = rows
        self.feature_extractor = processor.feature_extractor
        self.label_maker = labels
        self.languages = [row_language(r, language, labels.tokens.multilingual) for r in rows]
        self.timestamped = timestamped
        self.join = join
        self.seed = seed
        self.max_label_length = max_label_length
        self.raw = raw  # items carry audio, text and segments; window_packing.WindowPacker makes the rest
        self._same_language: dict = {}
        for j, lang in enumerate(self.languages):
            self._same_language.setdefault(lang, []).append(j)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row, language = self.rows[i], self.languages[i]
        samples = audio.load_audio(row.audio_path)
        if i not in self.timestamped:
            return self._item(i, samples, language, row.text)
        if self.raw:  # packed with other clips later, one segment per utterance
            return self._item(i, samples, language, row.text, own_segments(samples, row))
        parts = [(samples, row)]
        rng = random.Random(f"{self.seed}|join|{i}")
        if self.join:
            others = [j for j in self._same_language[language] if j != i]
            for j in rng.sample(others, min(rng.randint(0, MAX_JOINED - 1), len(others))):
                parts.append((audio.load_audio(self.rows[j].audio_path), self.rows[j]))
            rng.shuffle(parts)
        while True:
            joined, segments = _join(parts, rng)
            labels = self.label_maker.labels(row.text, language, segments, timestamps=True)
            if len(parts) == 1 or (len(joined) <= audio.N_SAMPLES and len(labels) <= self.max_label_length):
                return self._item(i, joined, language, row.text, segments, labels)
            # Too long for one window or for the decoder: one utterance fewer, never row i itself.
            drop = max(k for k, (_, r) in enumerate(parts) if r is not row)
            parts = parts[:drop] + parts[drop + 1:]

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


MAX_JOINED = 3  # utterances in one joined timestamped training item
PAUSE_SECONDS = (0.3, 1.2)  # silence between joined utterances, drawn uniformly


def _join(parts: list[tuple[np.ndarray, Row]], rng: random.Random) -> tuple[np.ndarray, list[dict]]:
    """Concatenate clips with pauses; each contributes its own segments (or one over its speech),
    moved to where it starts in the joined audio."""
    joined, starts = concat_with_pauses([samples for samples, _ in parts], rng)
    segments = [{"start": start + s["start"], "end": start + s["end"], "text": s["text"]}
                for (samples, row), start in zip(parts, starts) for s in own_segments(samples, row)]
    return joined, segments


def concat_with_pauses(clips: list[np.ndarray], rng: random.Random) -> tuple[np.ndarray, list[float]]:
    """Clips one after another with PAUSE_SECONDS of silence between them: (audio, start of each, s)."""
    pieces, starts, offset = [], [], 0
    for k, samples in enumerate(clips):
        if k:
            pause = np.zeros(int(rng.uniform(*PAUSE_SECONDS) * audio.SAMPLE_RATE), np.float32)
            pieces.append(pause)
            offset += len(pause)
        starts.append(offset / audio.SAMPLE_RATE)
        pieces.append(samples)
        offset += len(samples)
    return np.concatenate(pieces), starts


def own_segments(samples: np.ndarray, row: Row) -> list[dict]:
    """The row's segments, else one segment over its speech."""
    if row.segments:
        return row.segments
    begin, end = speech_span(samples)
    return [{"start": begin, "end": end, "text": row.text}]


@dataclass
class Collator:
    """Stacks features and pads labels with -100 to the longest in the batch.

    `language` (one code per clip) rides along for evaluation, which forces it on the decoder,
    and `index` (dataset index per clip) for the encoder cache; the trainer takes both out before
    the model's forward pass."""

    decoder_start_token_id: int
    # Turns items that carry raw audio (SpeechDataset(raw=True)) into packed windows with
    # features and labels (window_packing.WindowPacker); None: items come with features.
    packer: Callable[[list[dict]], list[dict]] | None = None

    def __call__(self, items: list[dict]) -> dict:
        import torch

        if self.packer is not None and "audio" in items[0]:
            items = self.packer(items)
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
                strict: bool = False) -> tuple[list[Row], DataReport]:
    """The rows of `manifest` training can use, and a report of the others.

    Dropped: rows manifest validation rejects (missing or undecodable audio, empty text, longer
    than max_seconds, duplicates, ...), clips shorter than min_seconds, labels longer than
    max_label_length. strict: any such row raises ManifestError. No row left raises too."""
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
    for row in report.good_rows:
        if row.duration is not None and row.duration < min_seconds:
            dropped.append((row.number, f"audio is {row.duration:.2f} s long, under --min_duration_in_seconds "
                                        f"{min_seconds:g}"))
            continue
        length = labels.longest_labels(row, row_language(row, language, multilingual))
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
