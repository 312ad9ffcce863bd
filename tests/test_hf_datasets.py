"""Hugging Face datasets as training input (hf_data.py, train.py): a save_to_disk folder and a
folder of data files for load_dataset give the same rows, checks and drop report as the manifest
twin of the same audio and text, and a saved dataset trains. Built here, offline: no hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whisper_lora.errors import OptionsError
from whisper_lora.data.hf_data import dataset_rows
from whisper_lora.training.dataset import SpeechDataset, usable_rows
from whisper_lora.training.options import TrainOptions
from whisper_lora.data.validation import validate_manifest

datasets = pytest.importorskip("datasets")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def twins(english_clips, tmp_path_factory):
    """(saved DatasetDict folder, parquet folder, train manifest, validation manifest): the same
    rows four ways. Train row 5 has no words and row 6 audio that does not decode."""
    folder = tmp_path_factory.mktemp("hf")
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file" * 20)
    train = [(str(p), t) for p, t in english_clips[:4]] + [(str(english_clips[0][0]), " "), (str(broken), "noise")]
    validation = [(str(p), t) for p, t in english_clips[4:6]]
    splits = {}
    for name, rows in (("train", train), ("validation", validation)):
        data = datasets.Dataset.from_dict({"audio": [p for p, _ in rows], "sentence": [t for _, t in rows],
                                           "locale": ["en"] * len(rows)})
        splits[name] = data.cast_column("audio", datasets.Audio())
        (folder / f"{name}.json").write_text(json.dumps([{"audio_path": p, "text": t, "language": "en"}
                                                         for p, t in rows]))
    saved = folder / "saved"
    datasets.DatasetDict(splits).save_to_disk(str(saved))  # embeds the audio bytes
    files = folder / "files" / "data"
    files.mkdir(parents=True)
    for name, data in splits.items():
        data.to_parquet(str(files / f"{name}-00000-of-00001.parquet"))
    return saved, files.parent, folder / "train.json", folder / "validation.json"


def _same_rows(report, twin):
    assert [(r.number, r.text, r.language) for r in report.good_rows] == [
        (r.number, r.text, r.language) for r in twin.good_rows]
    assert [r.duration for r in report.good_rows] == pytest.approx([r.duration for r in twin.good_rows])
    assert [(p.number, p.reason.split(":")[0]) for p in report.problems] == [
        (p.number, p.reason.split(":")[0]) for p in twin.problems]


def test_saved_and_data_file_datasets_give_the_manifest_twins_rows(twins, english):
    saved, files, train_json, _ = twins
    twin = validate_manifest(train_json)
    assert [p.number for p in twin.errors] == [5, 6]  # the twin itself has the two bad rows
    for source in (saved, files):  # save_to_disk folder; folder of parquet files for load_dataset
        report, reader = dataset_rows(str(source), "train")
        _same_rows(report, twin)
        assert all(r.audio_index == r.number - 1 for r in report.good_rows)
    # The audio the training set reads out of the dataset is the manifest's audio, feature for feature.
    _, processor, labels = english
    report, reader = dataset_rows(str(saved), "train")
    ours = SpeechDataset(report.good_rows, processor, labels, "en", audio_loader=reader)
    theirs = SpeechDataset(twin.good_rows, processor, labels, "en")
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        assert a["labels"] == b["labels"]
        np.testing.assert_allclose(a["input_features"], b["input_features"], atol=1e-5)
    # The drop report training writes is the twin's, row for row.
    rows, data = usable_rows(report.manifest, labels, "en", max_seconds=30, report=report)
    twin_rows, twin_data = usable_rows(str(train_json), labels, "en", max_seconds=30)
    assert [r.text for r in rows] == [r.text for r in twin_rows]
    assert [n for n, _ in data.dropped] == [n for n, _ in twin_data.dropped] == [5, 6]


def test_columns_and_splits_are_named_in_errors(twins):
    saved, files, _, _ = twins
    with pytest.raises(OptionsError, match="no split 'dev'.*--train_split"):
        dataset_rows(str(saved), "dev")
    with pytest.raises(OptionsError, match="no audio column 'speech'.*--audio_column"):
        dataset_rows(str(saved), "train", audio_column="speech")
    with pytest.raises(OptionsError, match="no text column 'words'.*--text_column"):
        dataset_rows(str(saved), "train", text_column="words")
    with pytest.raises(OptionsError, match="--dataset_name .*nothing-here.*cannot load it.*save_to_disk"):
        dataset_rows(str(files.parent / "nothing-here"), "train")


def test_dataset_options_are_checked_up_front(twins, tmp_path):
    saved, _, train_json, _ = twins

    def opts(**kw):
        kw.setdefault("train_file", None)
        return TrainOptions(model_name_or_path="bundled:tiny.en", output_dir=str(tmp_path), **kw)

    assert opts(train_file=str(saved), eval_split="validation").has_validation
    for kw, message in (({}, "give --train_file"), ({"train_file": str(train_json), "dataset_name": "x"}, "both given"),
                        ({"dataset_name": "x", "streaming": True}, "--streaming: .* give --max_steps"),
                        ({"train_file": str(train_json), "eval_split": "validation"},
                         "--eval_split validation goes with"),
                        ({"train_file": str(tmp_path / "none")}, "no such file")):
        with pytest.raises(OptionsError, match=message):
            opts(**kw)


def test_a_saved_dataset_trains_as_its_manifest_twin_does(twins, tiny_random, tmp_path):
    saved, _, train_json, validation_json = twins
    model, processor = tiny_random
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    common = ["--model_name_or_path", str(folder), "--max_steps", "2", "--per_device_train_batch_size", "2",
              "--generation_max_length", "6", "--warmup_steps", "0", "--timestamps", "--lora_dropout", "0"]
    runs = {}
    for name, data_flags in (("dataset", ["--dataset_name", str(saved), "--eval_split", "validation"]),
                             ("twin", ["--train_file", str(train_json), "--validation_file", str(validation_json)])):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "whisper_lora", "train", *common, *data_flags,
                               "--output_dir", str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[name] = json.loads((out / "metrics.json").read_text())
    # Same rows, same order, same seed: the same batches, so the same losses step for step.
    losses = {k: [e["loss"] for e in m["log_history"] if "loss" in e] for k, m in runs.items()}
    evals = {k: [e["eval_loss"] for e in m["log_history"] if "eval_loss" in e] for k, m in runs.items()}
    assert losses["dataset"] and losses["dataset"] == pytest.approx(losses["twin"], rel=1e-4)
    assert evals["dataset"] == pytest.approx(evals["twin"], rel=1e-4)
    metrics = runs["dataset"]
    assert metrics["global_step"] == 2 and metrics["baseline"] is not None
    data = json.loads((out / "training_config.json").read_text())["data"]
    assert data["train"]["rows"] == 6 and data["train"]["kept"] == 4
    assert [d["row"] for d in data["train"]["dropped_rows"]] == [5, 6]
    assert data["validation"]["kept"] == 2


def test_a_stream_is_checked_as_it_arrives(twins, english, caplog):
    from whisper_lora.training.stream import StreamingSpeechDataset

    _, files, _, _ = twins
    _, processor, labels = english
    stream = StreamingSpeechDataset(str(files), "train", processor, labels, "en", config=None, audio_column="audio",
                                    text_column=None, share=1.0, seed=0, max_seconds=30, min_seconds=0,
                                    max_label_length=448, raw=True)
    with caplog.at_level("WARNING"):
        items = list(stream)
    assert [it["text"] for it in items] == [t for t in json_texts(twins[2])[:4]]
    assert all(it["segments"] for it in items) and stream.dropped == 2
    assert "row 5 skipped: text is empty" in caplog.text and "row 6 skipped: cannot decode" in caplog.text


def json_texts(manifest):
    return [r["text"] for r in json.loads(Path(manifest).read_text())]


def test_a_streamed_dataset_trains(twins, tiny_random, tmp_path):
    _, files, _, _ = twins
    model, processor = tiny_random
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "whisper_lora", "train", "--model_name_or_path", str(folder),
                           "--dataset_name", str(files), "--streaming", "--eval_split", "validation",
                           "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "2",
                           "--generation_max_length", "6", "--warmup_steps", "0", "--save_steps", "3"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 3  # 4 good rows: the stream restarts
    assert "row 6 skipped: cannot decode" in proc.stderr


def test_dataset_flags_are_on_whisper_lora_train_only(twins, tmp_path):
    from whisper_lora.cli import build_parser
    from whisper_lora.cli.train import options_from_args

    args = build_parser().parse_args(["train", "--model_name_or_path", "bundled:tiny.en", "--output_dir", str(tmp_path),
                                      "--dataset_name", "user/set", "--dataset_config", "en", "--train_split", "dev",
                                      "--audio_column", "speech", "--text_column", "words", "--streaming",
                                      "--max_steps", "5"])
    opts = options_from_args(args)
    assert (opts.train_file, opts.dataset_name, opts.dataset_config, opts.train_split, opts.audio_column,
            opts.text_column, opts.streaming) == (None, "user/set", "en", "dev", "speech", "words", True)
    help_text = subprocess.run([sys.executable, str(ROOT / "whisper_lora_finetune.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--train_file" in help_text and "--dataset_name" not in help_text and "--streaming" not in help_text


def test_validate_command_reads_a_saved_dataset(twins, capsys):
    from whisper_lora.cli import main

    saved, _, _, _ = twins
    assert main(["validate", str(saved), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "row 5" in out and "text is empty" in out and "row 6" in out and "6 rows, 4 valid, 2 with errors" in out
