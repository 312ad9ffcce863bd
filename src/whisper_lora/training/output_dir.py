"""The training output folder (--output_dir): what a run puts in it and what is read back from it.

A finished folder holds the adapter and its config (peft), the processor, the generation config,
training_config.json (flags, resolved values, library versions, the base model to reload),
metrics.json, trainer_state.json, TensorBoard's runs/ and checkpoint-N folders, each of them a
loadable output folder too (trainer.CheckpointExtrasCallback). The file names: run_files.py.

train() calls writable_output_dir before anything else, so a bad --output_dir fails in a second;
prepare_output_dir, just before training starts, sets an earlier run's checkpoints aside.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import OptionsError
from ..run_files import CHECKPOINT_FILES, CHECKPOINT_PREFIX, TRAINING_CONFIG
from .lora import lora_target_regex
from .options import TrainOptions

log = logging.getLogger(__name__)

# Flags that make a resumed run a different recipe when they change (warned about, not refused).
RECIPE_FLAGS = ("model_name_or_path", "train_file", "per_device_train_batch_size", "gradient_accumulation_steps",
                "learning_rate", "lora_r", "lora_alpha", "lora_target_modules", "freeze_encoder", "freeze_decoder",
                "seed", "load_in_8bit", "load_in_4bit")


def writable_output_dir(output_dir: str) -> Path:
    """--output_dir as an absolute path, made if missing and tried for writing; OptionsError
    naming --output_dir when it is a file or cannot be written to."""
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OptionsError(f"--output_dir {out}: exists and is not a folder")
    # Try it rather than reason about permissions: root, read-only mounts and network
    # filesystems all defeat os.access. An empty folder left behind is harmless.
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OptionsError(f"--output_dir {out}: cannot write there ({exc.strerror or exc}); "
                           "choose a folder you can write to") from None
    return out.absolute()


# --- checkpoints -------------------------------------------------------------------------------------

def _step(path: Path) -> int | None:
    """N of a checkpoint-N name; None for any other name."""
    step = path.name.removeprefix(CHECKPOINT_PREFIX)
    return int(step) if step.isdigit() else None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-N folders holding everything a resume needs, oldest first. A checkpoint cut
    short (the process killed while writing it) lacks trainer_state.json, written last."""
    found = []
    for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = _step(path)
        if step is not None and path.is_dir() and all((path / f).is_file() for f in CHECKPOINT_FILES):
            found.append((step, path))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(value: str | None, output_dir: Path) -> Path | None:
    """The checkpoint folder --resume_from_checkpoint names: a path as given, or for "latest"
    the newest complete one in output_dir (OptionsError when there is none)."""
    if value is None:
        return None
    if value != "latest":
        return Path(value).expanduser().absolute()
    found = complete_checkpoints(output_dir)
    if not found:
        raise OptionsError(f"--resume_from_checkpoint latest: no complete checkpoint-N folder in {output_dir}; "
                           "start without --resume_from_checkpoint")
    newest = _step(found[-1])
    partial = [p.name for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
               if p.is_dir() and p not in found and (step := _step(p)) is not None and step > newest]
    if partial:
        log.warning("skipping incomplete %s (cut short while being written)", ", ".join(sorted(partial)))
    log.info("resuming from %s", found[-1])
    return found[-1]


def prepare_output_dir(output_dir: Path, options: TrainOptions, resume: Path | None) -> None:
    """Ready output_dir for this run (rank 0, just before training): a new run sets an earlier
    run's checkpoints aside; a resumed run warns about recipe flags that changed since it began."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        _set_aside_earlier_checkpoints(output_dir, options.overwrite_output_dir)
    elif (output_dir / TRAINING_CONFIG).is_file():
        _warn_changed_flags(output_dir, options)


def _set_aside_earlier_checkpoints(output_dir: Path, overwrite: bool) -> None:
    # A new run must not mix its checkpoints with an earlier run's (resume "latest" and the
    # Trainer's rotation would pick up the wrong ones).
    old = sorted(p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    if not old:
        return
    if overwrite:
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        log.warning("--overwrite_output_dir: deleted %d checkpoints of an earlier run in %s", len(old), output_dir)
        return
    archive = output_dir / "previous-runs" / time.strftime("%Y%m%d-%H%M%S")
    archive.mkdir(parents=True, exist_ok=True)
    for path in old:
        os.replace(path, archive / path.name)
    log.warning("%s held checkpoints of an earlier run: moved them to %s (to continue that run "
                "instead, pass --resume_from_checkpoint latest; --overwrite_output_dir deletes them)",
                output_dir, archive)


def _warn_changed_flags(output_dir: Path, options: TrainOptions) -> None:
    before = json.loads((output_dir / TRAINING_CONFIG).read_text(encoding="utf-8")).get("flags", {})
    now = options.as_dict()
    changed = [k for k in RECIPE_FLAGS if k in before and before[k] != now[k]]
    if changed:
        log.warning("resuming with flags that differ from the first run: %s; the optimizer state and step "
                    "count continue, but the run is no longer the same recipe", ", ".join(changed))


# --- training_config.json ------------------------------------------------------------------------------

def base_model_spec(spec: str) -> str:
    """The spec to reload the base from: a local path made absolute, else as given."""
    path = Path(spec).expanduser()
    if not spec.startswith("bundled:") and path.exists():
        return str(path.resolve())
    return spec


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("whisper-lora", "torch", "transformers", "peft", "accelerate", "numpy", "wandb"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def training_config(options: TrainOptions, precision: str, data: dict, language: str | None,
                    timestamp_share: float) -> dict:
    """training_config.json: the flags and what they resolved to, the data kept, the versions,
    and "base_model", which models.load_model reads to rebuild base + adapter."""
    return {
        "base_model": base_model_spec(options.model_name_or_path),
        "flags": options.as_dict(),
        "resolved": {"precision": precision, "language": language, "timestamp_share": timestamp_share,
                     "eval_steps": options.resolved_eval_steps,
                     "lora_target_regex": lora_target_regex(options.lora_target_modules, options.adapted_stacks),
                     "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
        "command": sys.argv,
        "library_versions": library_versions(),
        "data": data,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- validation results, read back from the Trainer's log history ----------------------------------------

def baseline_eval(history: list[dict]) -> dict | None:
    """The validation metrics of the base model, from the evaluation before step 0."""
    for entry in history:
        if entry.get("step") == 0 and "eval_loss" in entry:
            return _eval_only(entry)
    return None


def best_eval(history: list[dict], best_step: int | None) -> dict | None:
    """The validation metrics of the kept adapter: those at best_step, else the lowest error rate."""
    evals = [e for e in history if "eval_error_rate" in e and e.get("step", 0) > 0]
    if not evals:
        return None
    chosen = [e for e in evals if e.get("step") == best_step] or [min(evals, key=lambda e: e["eval_error_rate"])]
    return _eval_only(chosen[-1])


def _eval_only(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k.startswith("eval_") or k in ("step", "epoch")}
