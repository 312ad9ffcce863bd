"""Evaluate one or more models on a manifest: WER/CER raw and normalised, per utterance and overall.

Each model transcribes every row of the manifest; the transcripts are scored against the
manifest's text with scoring/metrics.py. Several models in one call give a side-by-side table
(base first, then fine-tuned), so a gain or a loss is read off one line. With output_dir, it
writes (the reports by scoring/report.py):
  utterances-<model>.csv   number, path, language, reference, hypothesis, errors, ... per row
  results.json             every figure of every model, for scripts
  report.md, report.html   the table, the worst utterances of each model, and the training
                           curves of any model that is a training output folder (PNG files,
                           embedded in the HTML page so it is one self-contained file)

The result types (Utterance, ModelResult, Evaluation), score_transcripts and the writers of the
CSV, JSON and report files live in scoring/results.py; they are imported back here, so
`from whisper_lora.evaluate import Evaluation, write_outputs` works as before.

The scoring language of a row is --language, else the row's own, else guessed from the script of
its reference (Han -> zh, kana -> ja, Hangul -> ko, Thai -> th, otherwise en): the normaliser must
depend on the reference alone, so that every model is scored the same way. Only an explicit
language (--language or the row's) is forced on the decoder; otherwise the model detects it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import OptionsError
from .languages import language_code
from .data.lm import DEFAULT_LM_BONUS, DEFAULT_LM_WEIGHT
# Result types and writers, imported back (see the module docstring).
from .scoring.results import (CSV_FIELDS, Evaluation, ModelResult, Utterance, results_json, score_transcripts,
                              summary_line, utterance_rows, write_outputs)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateOptions:
    models: tuple[str, ...]  # model specs, in table order: put the base model first
    data: str  # manifest (.json list or .jsonl) with audio_path and text
    language: str | None = None  # forces decoding and scoring language; None: per row (see module doc)
    output_dir: str | None = None  # where CSVs and reports go; None writes nothing
    batch_size: int = 16  # files decoded together
    beam_size: int = 1  # 1: greedy decoding; more: beam search (slower, usually a little better)
    precision: str = "auto"  # auto, fp32, bf16, fp16: as for transcription (auto on a CPU: fp32, int8 output head)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    cache_dir: str | None = None  # hub downloads and converted models
    max_samples: int | None = None  # evaluate the first N rows only (quick checks)
    worst: int = 10  # worst utterances listed per model in the report
    pack: bool = True  # short clips share 30-s windows, as `transcribe` decodes them (False: one per window)
    glossary: str | None = None  # domain terms, one per line: decoded as `transcribe --glossary` does
    lm: str | None = None  # a word n-gram language model fused into the search, as `transcribe --lm`
    # its weights: one row of the table per weight (choosing one on a validation set)
    lm_weights: tuple[float, ...] = (DEFAULT_LM_WEIGHT,)
    lm_bonus: float = DEFAULT_LM_BONUS

    def __post_init__(self):
        if isinstance(self.models, (str, bytes)):
            raise OptionsError("models must be a list of model specs, not one string")
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise OptionsError("--model: give at least one model to evaluate")
        if len(set(self.models)) != len(self.models):
            raise OptionsError(f"--model: the same model is given twice ({', '.join(self.models)})")
        if not Path(self.data).is_file():
            raise OptionsError(f"--data {self.data}: no such manifest file")
        if self.language is not None:
            object.__setattr__(self, "language", language_code(self.language))
        if self.batch_size < 1:
            raise OptionsError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.beam_size < 1:
            raise OptionsError(f"--beam_size {self.beam_size}: must be at least 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise OptionsError(f"--max_samples {self.max_samples}: must be at least 1")
        if self.worst < 0:
            raise OptionsError(f"--worst {self.worst}: must be 0 or more")
        if self.glossary is not None:
            from .data.glossary import Glossary

            Glossary.read(self.glossary)  # its errors before any model loads
        object.__setattr__(self, "lm_weights", tuple(float(w) for w in self.lm_weights))
        if not self.lm_weights or any(w < 0 for w in self.lm_weights):
            raise OptionsError(f"--lm_weight {','.join(map(str, self.lm_weights))}: give weights of 0 or more")
        if self.lm is not None:
            from .transcribe import check_lm

            for spec in self.models:  # before the first model is evaluated
                check_lm(spec, self.lm)

    @property
    def variants(self) -> list[tuple[str, float | None]]:
        """(model spec, language-model weight or None) per row of the table, in order."""
        weights = self.lm_weights if self.lm is not None else (None,)
        return [(spec, w) for spec in self.models for w in weights]


def model_labels(specs) -> list[str]:
    """Short unique names: a folder's name (with its parent when two share it), else the spec."""
    def short(spec, depth):
        path = Path(spec)
        if path.exists():
            parts = path.resolve().parts
            return "/".join(parts[-depth:])
        return spec
    labels = [short(s, 1) for s in specs]
    for depth in (2, 3):
        if len(set(labels)) == len(labels):
            break
        labels = [short(s, depth) if labels.count(lab) > 1 else lab for s, lab in zip(specs, labels)]
    if len(set(labels)) != len(labels):
        labels = [f"{i + 1}-{lab}" for i, lab in enumerate(labels)]
    return labels


def transcribe_rows(spec: str, rows, options: EvaluateOptions,
                    lm_weight: float | None = None) -> tuple[list[str], list[str | None]]:
    """(hypotheses, failures) of one model for the rows, in row order; the model is loaded once."""
    from dataclasses import replace

    from .decoding.options import TranscribeOptions
    from .transcribe import Transcriber, choose_backend

    # Temperature 0 only: the fallback to sampling would make scores change from run to run.
    decoding = TranscribeOptions(device=options.device, batch_size=options.batch_size, beam_size=options.beam_size,
                                 precision=options.precision, temperatures=(0.0,), cache_dir=options.cache_dir,
                                 pack=options.pack, glossary=options.glossary,
                                 lm=options.lm if lm_weight else None,  # 0: the model alone
                                 lm_weight=lm_weight or 0.0, lm_bonus=options.lm_bonus)
    # Rows sharing a decoding language are decoded together; None lets the model detect it.
    groups: dict[str | None, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(options.language or language_code(row.language), []).append(i)
    if choose_backend(spec, "auto") == "ct2":
        def transcriber(lang):
            return Transcriber.from_spec(spec, replace(decoding, language=lang))
    else:  # load the weights once, whatever the number of languages
        from .models import is_adapter_folder, load_model

        # Merged: the same transcripts as base + adapter, at the base model's speed.
        model, processor = load_model(spec, cache_dir=options.cache_dir, merge=is_adapter_folder(spec))

        def transcriber(lang):
            return Transcriber.from_model(model, processor, replace(decoding, language=lang), model_name=spec)
    hypotheses: list[str] = [""] * len(rows)
    failures: list[str | None] = [None] * len(rows)
    for lang, indices in groups.items():
        results = transcriber(lang).transcribe_files([rows[i].audio_path for i in indices])
        for i, result in zip(indices, results, strict=True):
            hypotheses[i] = result.text
            failures[i] = result.error
    return hypotheses, failures


def evaluate(options: EvaluateOptions) -> Evaluation:
    """Transcribe the manifest with every model, score it, and write the outputs (see module doc)."""
    from .data.manifest import read_manifest
    from .models import is_adapter_folder

    rows = read_manifest(options.data)
    if options.max_samples:
        rows = rows[: options.max_samples]
    if not rows:
        raise OptionsError(f"--data {options.data}: the manifest has no rows to evaluate")
    audio_seconds = _total_duration(rows)
    results = []
    labels = dict(zip(options.models, model_labels(options.models)))
    for spec, weight in options.variants:
        label = labels[spec] if weight is None else f"{labels[spec]} lm {weight:g}"
        log.info("evaluating %s on %d utterances", label, len(rows))
        start = time.perf_counter()
        hypotheses, failures = transcribe_rows(spec, rows, options, weight)
        seconds = time.perf_counter() - start
        result = ModelResult(spec, label, score_transcripts(rows, hypotheses, failures, options.language),
                             seconds, audio_seconds, spec if is_adapter_folder(spec) else None)
        results.append(result)
        log.info("%s", summary_line(result))
    evaluation = Evaluation(str(Path(options.data).resolve()), results)
    if options.output_dir:
        evaluation.files = write_outputs(evaluation, options.output_dir, worst=options.worst)
    return evaluation


def _total_duration(rows) -> float | None:
    from .audio import audio_duration

    try:
        return sum(audio_duration(row.audio_path) for row in rows)
    except Exception:  # durations only feed the speed column; a bad file fails later with its own message
        return None


__all__ = ["EvaluateOptions", "evaluate", "transcribe_rows", "model_labels", "CSV_FIELDS", "Evaluation",
           "ModelResult", "Utterance", "results_json", "score_transcripts", "summary_line", "utterance_rows",
           "write_outputs"]
