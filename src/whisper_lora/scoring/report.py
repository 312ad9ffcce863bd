"""Evaluation reports: report.md (PNG curves beside it) and report.html (one self-contained file:
inline CSS, curves embedded as base64 data URIs, no scripts, nothing fetched from anywhere).

Both are built from the same sections, so they always say the same thing:
  the side-by-side table (one line per model and language; the language's primary metric marked),
  the change per utterance against the first model (better / worse / same),
  the worst utterances of each model,
  the training curves (loss, eval WER/CER) of each model that is a training output folder.
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .curves import training_plots
from ..fileio import write_bytes


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Image:
    title: str
    name: str  # PNG file name beside report.md
    png: bytes


def _pct(x: float) -> str:
    return "inf" if x == float("inf") else f"{100 * x:.2f}%"


def results_table(evaluation) -> Table:
    first: dict = {}
    rows = []
    for result in evaluation.results:
        for lang, s in result.by_language.items():
            base = first.setdefault(lang, s.primary)
            counts = s.chars if s.primary_metric == "cer" else s.words
            figures = {"wer": _pct(s.wer), "cer": _pct(s.cer)}
            figures[s.primary_metric] = f"**{figures[s.primary_metric]}**"
            if result is evaluation.results[0] or base == 0:
                change = ""
            else:
                change = f"{100 * (s.primary - base) / base:+.1f}%"
            speed = ""
            if result.audio_seconds and result.seconds > 0:
                speed = f"{result.audio_seconds / result.seconds:.1f}x"
            rows.append([result.label, lang or "", str(s.utterances), figures["wer"], figures["cer"],
                         _pct(s.raw_wer), _pct(s.raw_cer), str(counts.substitutions), str(counts.deletions),
                         str(counts.insertions), str(counts.reference_length), change, speed])
    return Table("Results", ["model", "language", "utterances", "WER", "CER", "raw WER", "raw CER",
                             "S", "D", "I", "N", "change", "speed"], rows,
                 note="WER and CER after normalisation (Whisper's English normaliser for English, the "
                      "basic one for other languages; Chinese: punctuation removed, Traditional mapped to "
                      "Simplified); raw: as written. **Bold**: the language's primary metric, whose "
                      "substitutions (S), deletions (D), insertions (I) and reference length (N) follow. "
                      "change: relative to the first model. speed: audio seconds per wall-clock second, "
                      "model loading included.")


def comparison_table(evaluation) -> Table | None:
    """Per-utterance change of each model against the first: how many got better or worse."""
    if len(evaluation.results) < 2:
        return None
    first = evaluation.results[0]
    rows = []
    for result in evaluation.results[1:]:
        better = worse = same = 0
        for a, b in zip(first.utterances, result.utterances, strict=True):
            if b.errors < a.errors:
                better += 1
            elif b.errors > a.errors:
                worse += 1
            else:
                same += 1
        rows.append([result.label, str(better), str(worse), str(same)])
    return Table(f"Per utterance against {first.label}", ["model", "fewer errors", "more errors", "same"], rows)


def worst_table(result, n: int) -> Table:
    rows = [[str(u.number), f"{u.errors}/{u.reference_length}", u.reference,
             u.hypothesis if u.failure is None else f"(failed: {u.failure})"] for u in result.worst(n)]
    return Table(f"Worst utterances: {result.label}", ["row", "errors", "reference", "hypothesis"], rows,
                 note="" if rows else "No errors.")


def file_slug(label: str) -> str:
    """A model label as part of a file name: utterances-<slug>.csv, curves-<slug>-loss.png."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"


def curve_images(evaluation) -> list[Image]:
    images = []
    for result in evaluation.results:
        if not result.training_folder:
            continue
        for kind, png in training_plots(result.training_folder).items():
            title = {"loss": "Training and evaluation loss", "eval_error_rate": "Evaluation error rate"}[kind]
            images.append(Image(f"{title}: {result.label}", f"curves-{file_slug(result.label)}-{kind}.png", png))
    return images


def sections(evaluation, worst: int) -> tuple[list[Table], list[Image]]:
    tables = [results_table(evaluation)]
    comparison = comparison_table(evaluation)
    if comparison:
        tables.append(comparison)
    if worst:
        tables.extend(worst_table(r, worst) for r in evaluation.results)
    return tables, curve_images(evaluation)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(t: Table) -> str:
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(evaluation, tables: list[Table], images: list[Image]) -> str:
    lines = ["# Evaluation report", "", f"Data: `{evaluation.data}`  ",
             f"Written: {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for t in tables:
        lines += [f"## {t.title}", "", markdown_table(t)]
        if t.note:
            lines += ["", t.note]
        lines.append("")
    if images:
        lines += ["## Training curves", ""]
        lines += [f"![{img.title}]({img.name})\n" for img in images]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _html_cell(text: str) -> str:
    bold = text.startswith("**") and text.endswith("**") and len(text) > 4
    inner = html.escape(text[2:-2] if bold else text)
    numeric = inner.replace(".", "").replace("%", "").replace("x", "").replace("/", "").lstrip("+-").isdigit()
    cls = ' class="num"' if numeric else ""
    return f"<td{cls}>{'<b>' + inner + '</b>' if bold else inner}</td>"


def _html_note(note: str) -> str:
    parts = html.escape(note).split("**")  # **x** -> <b>x</b>
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def render_html(evaluation, tables: list[Table], images: list[Image]) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>Evaluation report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>Evaluation report</h1>",
           f"<p>Data: <code>{html.escape(evaluation.data)}</code><br>Written: {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    for t in tables:
        out.append(f"<h2>{html.escape(t.title)}</h2><table><thead><tr>"
                   + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in t.rows]
        out.append("</tbody></table>")
        if t.note:
            out.append(f'<p class="note">{_html_note(t.note)}</p>')
    if images:
        out.append("<h2>Training curves</h2>")
        for img in images:
            data = base64.b64encode(img.png).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(img.title)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(img.title)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_reports(evaluation, output_dir: str | os.PathLike, worst: int = 10) -> dict[str, Path]:
    """Write report.md, report.html and the curve PNGs into output_dir; return name -> path."""
    out = Path(output_dir)
    tables, images = sections(evaluation, worst)
    files = {img.name: write_bytes(out / img.name, img.png) for img in images}
    files["report.md"] = write_bytes(out / "report.md", render_markdown(evaluation, tables, images).encode("utf-8"))
    files["report.html"] = write_bytes(out / "report.html", render_html(evaluation, tables, images).encode("utf-8"))
    return files
