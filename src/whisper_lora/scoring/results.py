"""Evaluation's results and what writes them: a model's scored utterances (Utterance,
ModelResult), one run over a manifest (Evaluation), the scoring of transcripts against manifest
rows, and the outputs: utterances-<model>.csv, results.json and the reports (report.py).

Separate from evaluate.py, which loads and runs the models, because none of this needs a model
or a transcriber: results can be built from any transcripts and written (the demo writes its
own before/after pair). evaluate.py imports these names back, so
`from whisper_lora.evaluate import Evaluation` still works.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import write_bytes
from ..languages import guess_language, language_code
from .metrics import Scores, normalize, normalize_for_cer, utterance_errors
from .report import file_slug, write_reports

CSV_FIELDS = ("number", "path", "language", "reference", "hypothesis", "errors", "reference_length",
              "error_rate", "metric", "substitutions", "deletions", "insertions",
              "normalized_reference", "normalized_hypothesis", "raw_wer", "failure")


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
