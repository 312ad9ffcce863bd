"""Training curves (loss, eval WER/CER) read back from a training output folder, and drawn as PNG.

Sources, merged in this order (a later one fills only tags the earlier ones lack):
  trainer_state.json   in the folder, else in its newest checkpoint-*/: transformers' log_history
  runs/**/events.*     TensorBoard scalars, as transformers' TensorBoardCallback wrote them
  metrics.json         train.py's summary; a "log_history" list in it is read like trainer_state's
Tags use TensorBoard's names: train/loss, eval/loss, eval/wer, ... (transformers' rewrite_logs).
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

from ..run_files import CHECKPOINT_PREFIX, METRICS, TRAINER_STATE

log = logging.getLogger(__name__)

Curves = dict[str, list[tuple[int, float]]]  # tag -> [(global step, value)] sorted by step

# log_history keys that are per-step series (others, such as train_runtime, are end-of-run totals)
_TRAIN_SERIES = ("loss", "learning_rate", "grad_norm")
_ERROR_RATE = re.compile(r"(^|[/_])(wer|cer)($|_)")


def _tag(key: str) -> str | None:
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    if key in _TRAIN_SERIES:
        return "train/" + key
    return None


def _from_log_history(history: list[dict]) -> Curves:
    curves: Curves = {}
    for entry in history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            tag = _tag(key)
            if tag and isinstance(value, (int, float)) and not isinstance(value, bool):
                curves.setdefault(tag, []).append((int(step), float(value)))
    return curves


def _trainer_state(folder: Path) -> Path | None:
    if (folder / TRAINER_STATE).is_file():
        return folder / TRAINER_STATE
    def step(path: Path) -> int:  # checkpoint-<step>: newest is the highest step, not the last name
        suffix = path.parent.name.rsplit("-", 1)[-1]
        return int(suffix) if suffix.isdigit() else -1

    checkpoints = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*/{TRAINER_STATE}"), key=step)
    return checkpoints[-1] if checkpoints else None


def _from_tensorboard(folder: Path) -> Curves:
    runs = folder / "runs"
    if not runs.is_dir() or not any(runs.rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_log = logging.getLogger("tensorboard")
    if tb_log.level == logging.NOTSET:  # its INFO lines ("No path found after ...") are noise here
        tb_log.setLevel(logging.WARNING)
    curves: Curves = {}
    for run_dir in sorted({p.parent for p in runs.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every point
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            curves.setdefault(tag, []).extend((e.step, float(e.value)) for e in acc.Scalars(tag))
    return curves


def read_curves(folder: str | Path) -> Curves:
    """Every per-step series logged in a training output folder; {} when there are none."""
    folder = Path(folder)
    curves: Curves = {}
    sources = []
    state = _trainer_state(folder)
    if state is not None:
        sources.append(lambda: _from_log_history(json.loads(state.read_text(encoding="utf-8")).get("log_history", [])))
    sources.append(lambda: _from_tensorboard(folder))
    if (folder / METRICS).is_file():
        def from_metrics():
            data = json.loads((folder / METRICS).read_text(encoding="utf-8"))
            return _from_log_history(data.get("log_history", [])) if isinstance(data, dict) else {}
        sources.append(from_metrics)
    for source in sources:
        try:
            found = source()
        except (OSError, ValueError, AttributeError) as exc:  # a damaged file costs its curves only
            log.warning("%s: cannot read training curves: %s", folder, exc)
            continue
        for tag, points in found.items():
            if tag not in curves:
                # last value wins for a step logged twice (a resumed run re-logs its steps)
                curves[tag] = sorted(dict(points).items())
    return curves


def loss_tags(curves: Curves) -> list[str]:
    return [t for t in ("train/loss", "eval/loss") if t in curves]


def error_rate_tags(curves: Curves) -> list[str]:
    return sorted(t for t in curves if t.startswith("eval/") and _ERROR_RATE.search(t.split("/", 1)[1]))


def plot_png(curves: Curves, tags: list[str], title: str, ylabel: str) -> bytes:
    """One PNG with a line per tag against the training step."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    for tag in tags:
        steps, values = zip(*curves[tag])
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=tag)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def training_plots(folder: str | Path) -> dict[str, bytes]:
    """{"loss": png, "eval_error_rate": png} for the series a training folder logged (either may be absent)."""
    curves = read_curves(folder)
    plots = {}
    if loss_tags(curves):
        plots["loss"] = plot_png(curves, loss_tags(curves), f"Loss: {Path(folder).name}", "loss")
    if error_rate_tags(curves):
        plots["eval_error_rate"] = plot_png(curves, error_rate_tags(curves),
                                            f"Evaluation error rate: {Path(folder).name}", "error rate")
    return plots
