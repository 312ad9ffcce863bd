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

The scoring language of a row is --language, else the row's own, else guessed from the script of
its reference (Han -> zh, kana -> ja, Hangul -> ko, Thai -> th, otherwise en): the normaliser must
depend on the reference alone, so that every model is scored the same way. Only an explicit
language (--language or the row's) is forced on the decoder; otherwise the model detects it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OptionsError
from .fileio import write_bytes
from .languages import guess_language, language_code
from .lm import DEFAULT_LM_BONUS, DEFAULT_LM_WEIGHT
from .scoring.metrics import Scores, normalize, normalize_for_cer, utterance_errors
from .scoring.report import file_slug, write_reports

log = logging.getLogger(__name__)

CSV_FIELDS = ("number", "path", "language", "reference", "hypothesis", "errors", "reference_length",
              "error_rate", "metric", "substitutions", "deletions", "insertions",
              "normalized_reference", "normalized_hypothesis", "raw_wer", "failure")


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
            from .glossary import Glossary

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


@dataclass(frozen=True)
class Utterance:
    number: int  # manifest row number
    audio_path: str
    language: str | None  # the scoring language code
    reference: str
    hypothesis: str  # "" when transcription failed
    scores: Scores  # of this utterance alone
    failure: str | None = None  # why transcription failed, if it did

    @property
    def errors(self) -> int:
        """Edits of the language's primary measure (normalised words or characters)."""
        return (self.scores.chars if self.scores.primary_metric == "cer" else self.scores.words).errors

    @property
    def reference_length(self) -> int:
        return (self.scores.chars if self.scores.primary_metric == "cer" else self.scores.words).reference_length


@dataclass
class ModelResult:
    spec: str  # the model spec as given
    label: str  # short unique name for tables and file names
    utterances: list[Utterance]
    seconds: float  # wall time to transcribe everything (model loading included)
    audio_seconds: float | None = None  # total duration of the audio, when known
    training_folder: str | None = None  # the spec when it is a training output folder (has curves)

    @property
    def by_language(self) -> dict[str | None, Scores]:
        """Scores per scoring language, in order of first appearance."""
        out: dict[str | None, Scores] = {}
        for u in self.utterances:
            out[u.language] = out.get(u.language, Scores(u.language)) + u.scores
        return out

    @property
    def failures(self) -> int:
        return sum(u.failure is not None for u in self.utterances)

    def worst(self, n: int) -> list[Utterance]:
        """The n utterances with the most errors (ties: higher error rate first, then row order)."""
        ranked = sorted(self.utterances, key=lambda u: (-u.errors, -u.scores.primary, u.number))
        return [u for u in ranked[:n] if u.errors > 0]


@dataclass
class Evaluation:
    data: str  # the manifest, absolute
    results: list[ModelResult]
    files: dict[str, Path] = field(default_factory=dict)  # what was written: name -> path


def score_transcripts(rows, hypotheses: list[str], failures: list[str | None] | None = None,
                      language: str | None = None) -> list[Utterance]:
    """Score one model's transcripts (in row order) against manifest rows."""
    failures = failures or [None] * len(rows)
    out = []
    for row, hyp, failure in zip(rows, hypotheses, failures, strict=True):
        lang = language or language_code(row.language) or guess_language(row.text)
        out.append(Utterance(row.number, row.audio_path, lang, row.text, hyp,
                             utterance_errors(row.text, hyp, lang), failure))
    return out


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
    from .manifest import read_manifest
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


def summary_line(result: ModelResult) -> str:
    parts = []
    for lang, s in result.by_language.items():
        other = "wer" if s.primary_metric == "cer" else "cer"
        parts.append(f"[{lang}] {s.primary_metric.upper()} {100 * s.primary:.2f}% ({other.upper()} "
                     f"{100 * getattr(s, other):.2f}%, raw WER {100 * s.raw_wer:.2f}%) on {s.utterances} utterances")
    fails = f", {result.failures} failed" if result.failures else ""
    return f"{result.label}: " + "; ".join(parts) + fails


# ---- outputs -------------------------------------------------------------------------------


def utterance_rows(result: ModelResult) -> list[dict]:
    out = []
    for u in result.utterances:
        counts = u.scores.chars if u.scores.primary_metric == "cer" else u.scores.words
        norm = normalize_for_cer if u.scores.primary_metric == "cer" else normalize
        out.append({
            "number": u.number, "path": u.audio_path, "language": u.language, "reference": u.reference,
            "hypothesis": u.hypothesis, "errors": u.errors, "reference_length": u.reference_length,
            "error_rate": round(counts.rate, 4), "metric": u.scores.primary_metric,
            "substitutions": counts.substitutions, "deletions": counts.deletions,
            "insertions": counts.insertions, "normalized_reference": norm(u.reference, u.language),
            "normalized_hypothesis": norm(u.hypothesis, u.language), "raw_wer": round(u.scores.raw_wer, 4),
            "failure": u.failure or "",
        })
    return out


def write_outputs(evaluation: Evaluation, output_dir: str | os.PathLike, worst: int = 10) -> dict[str, Path]:
    """Write per-utterance CSVs, results.json, report.md/.html and curve PNGs; return their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for result in evaluation.results:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(utterance_rows(result))
        name = f"utterances-{file_slug(result.label)}.csv"
        files[name] = write_bytes(out / name, buffer.getvalue().encode("utf-8"))
    files["results.json"] = write_bytes(out / "results.json",
                                          (json.dumps(results_json(evaluation), indent=2, ensure_ascii=False)
                                           + "\n").encode("utf-8"))
    files.update(write_reports(evaluation, out, worst=worst))
    return files


def results_json(evaluation: Evaluation) -> dict:
    return {
        "data": evaluation.data,
        "models": [{
            "spec": r.spec, "label": r.label, "seconds": round(r.seconds, 3),
            "audio_seconds": r.audio_seconds, "failures": r.failures,
            "scores": [s.as_dict() for s in r.by_language.values()],
        } for r in evaluation.results],
    }
