"""The training output folder (training/output_dir.py): made and tried first, checkpoints found
and set aside, and the validation results read back from the log history."""

from __future__ import annotations

import json
import logging
import re

import pytest

from whisper_lora.errors import OptionsError
from whisper_lora.training.options import TrainOptions
from whisper_lora.training.output_dir import (baseline_eval, best_eval, complete_checkpoints, prepare_output_dir,
                                              resolve_checkpoint, writable_output_dir)


@pytest.fixture
def manifest(tmp_path):
    """A manifest file: the options only check that it is there."""
    path = tmp_path / "train.json"
    path.write_text("[]", encoding="utf-8")
    return str(path)


def test_options_write_nothing(manifest, tmp_path):
    TrainOptions("bundled:tiny.en", manifest, str(tmp_path / "new" / "out"))
    assert not (tmp_path / "new").exists()


def test_writable_output_dir(tmp_path):
    out = writable_output_dir(str(tmp_path / "a" / "b"))
    assert out.is_dir() and out.is_absolute() and list(out.iterdir()) == []  # the probe file is gone
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OptionsError, match=re.escape(f"--output_dir {blocker}: exists and is not a folder")):
        writable_output_dir(str(blocker))
    with pytest.raises(OptionsError, match="--output_dir .*cannot write there"):
        writable_output_dir(str(blocker / "out"))
    with pytest.raises(OptionsError, match="cannot write there"):
        writable_output_dir("/proc/whisper-lora-out")  # unwritable even for root


def test_train_checks_the_output_dir_before_anything_else(manifest, tmp_path):
    """No model is loaded and no manifest read: the model spec here does not exist, and its error
    would come first were the folder checked later."""
    from whisper_lora.train import train

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OptionsError, match="--output_dir .*exists and is not a folder"):
        train(TrainOptions(str(tmp_path / "no-such-model"), manifest, str(blocker)))


def checkpoint(out, step, complete=True):
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if complete:
        for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
            (folder / name).write_text("{}")
    return folder


def test_resume_latest_takes_the_newest_complete_checkpoint(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OptionsError, match="no complete checkpoint-N folder"):
        resolve_checkpoint("latest", out)
    checkpoint(out, 3), checkpoint(out, 12), checkpoint(out, 15, complete=False)
    (out / "checkpoint-x").mkdir()
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-3", "checkpoint-12"]  # by step, not name
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint("latest", out) == out / "checkpoint-12"
    assert "skipping incomplete checkpoint-15" in caplog.text
    assert resolve_checkpoint(None, out) is None
    assert resolve_checkpoint(str(out / "checkpoint-3"), out) == out / "checkpoint-3"


def test_earlier_checkpoints_are_moved_aside_or_deleted(manifest, tmp_path, caplog):
    out = tmp_path / "out"
    (out / "checkpoint-5").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(out, TrainOptions("bundled:tiny.en", manifest, str(out)), resume=None)
    assert not (out / "checkpoint-5").exists()
    assert [p.name for p in out.glob("previous-runs/*/*")] == ["checkpoint-5"]
    assert "moved them to" in caplog.text
    (out / "checkpoint-7").mkdir()
    prepare_output_dir(out, TrainOptions("bundled:tiny.en", manifest, str(out), overwrite_output_dir=True),
                       resume=None)
    assert not (out / "checkpoint-7").exists() and len(list(out.glob("previous-runs/*/*"))) == 1


def test_resuming_with_another_recipe_warns(manifest, tmp_path, caplog):
    out = tmp_path / "out"
    first = TrainOptions("bundled:tiny.en", manifest, str(out))
    out.mkdir()
    (out / "training_config.json").write_text(json.dumps({"flags": first.as_dict()}))
    resume = checkpoint(out, 3)
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(out, first, resume)
        assert "differ" not in caplog.text
        prepare_output_dir(out, first.replace(lora_r=8, logging_steps=1), resume)
    assert "flags that differ from the first run: lora_r;" in caplog.text
    assert resume.is_dir()  # a resumed run's checkpoints stay where they are


def test_validation_results_from_the_log_history():
    history = [{"step": 0, "eval_loss": 3.0, "eval_error_rate": 0.5, "epoch": 0},
               {"step": 1, "loss": 2.0},
               {"step": 2, "eval_loss": 2.0, "eval_error_rate": 0.3, "eval_wer": 0.3},
               {"step": 4, "eval_loss": 1.9, "eval_error_rate": 0.4}]
    assert baseline_eval(history) == {"step": 0, "eval_loss": 3.0, "eval_error_rate": 0.5, "epoch": 0}
    assert best_eval(history, best_step=4)["step"] == 4  # the Trainer's choice wins
    assert best_eval(history, best_step=None)["step"] == 2  # else the lowest error rate
    assert baseline_eval(history[1:]) is None and best_eval(history[:2], None) is None
