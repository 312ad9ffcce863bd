"""evaluate: scoring of manifest rows, CSV/JSON/Markdown/HTML outputs, training curves, and an
end-to-end run of bundled tiny.en against a LoRA adapter on espeak-ng speech."""

from __future__ import annotations

import base64
import csv
import json
import re

import jiwer
import pytest

from whisper_lora.scoring.curves import error_rate_tags, loss_tags, read_curves, training_plots
from whisper_lora.errors import OptionsError
from whisper_lora.evaluate import (
    EvaluateOptions,
    Evaluation,
    ModelResult,
    model_labels,
    score_transcripts,
    write_outputs,
)
from whisper_lora.data.manifest import Row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ROWS = [
    Row(1, "/data/a.wav", "The cat sat on the mat."),
    Row(2, "/data/b.wav", "It costs $20."),
    Row(3, "/data/c.wav", "這是一個測試。", language="zh"),
    Row(4, "/data/d.wav", "Hello there."),
]
BASE_HYPS = ["the cat sat on a hat", "it costs twenty dollars", "这是一个", "yellow bear"]
TUNED_HYPS = ["The cat sat on the mat.", "It costs 20 dollars.", "这是一个测试", "hello there"]


def _result(label, hyps, failures=None, training_folder=None):
    return ModelResult(label, label, score_transcripts(ROWS, hyps, failures), seconds=2.0, audio_seconds=8.0,
                       training_folder=training_folder)


def test_score_transcripts_languages_and_counts():
    utts = score_transcripts(ROWS, BASE_HYPS)
    assert [u.language for u in utts] == ["en", "en", "zh", "en"]  # row 3's own, others guessed
    assert [u.errors for u in utts] == [2, 0, 2, 2]  # words for English, characters for Chinese
    assert utts[2].scores.primary_metric == "cer" and utts[2].reference_length == 6
    # --language overrides rows and guesses alike
    assert {u.language for u in score_transcripts(ROWS, BASE_HYPS, language="fr")} == {"fr"}


def test_corpus_scores_equal_jiwer():
    result = _result("base", BASE_HYPS)
    scores = result.by_language
    assert set(scores) == {"en", "zh"}
    en = [(r.text, h) for r, h in zip(ROWS, BASE_HYPS) if r.language is None]
    refs, hyps = zip(*en)
    assert scores["en"].raw_wer == pytest.approx(jiwer.wer(list(refs), list(hyps)))
    assert scores["zh"].cer == pytest.approx(2 / 6)


def test_model_labels_unique(tmp_path):
    for name in ("a/out", "b/out"):
        (tmp_path / name).mkdir(parents=True)
    labels = model_labels(["bundled:tiny.en", str(tmp_path / "a/out"), str(tmp_path / "b/out")])
    assert labels == ["bundled:tiny.en", "a/out", "b/out"]


def test_options_checked(tmp_path):
    data = tmp_path / "m.json"
    data.write_text("[]")
    with pytest.raises(OptionsError, match="no such manifest"):
        EvaluateOptions(models=("bundled:tiny.en",), data=str(tmp_path / "missing.json"))
    with pytest.raises(OptionsError, match="at least one model"):
        EvaluateOptions(models=(), data=str(data))
    with pytest.raises(OptionsError, match="twice"):
        EvaluateOptions(models=("x", "x"), data=str(data))
    with pytest.raises(OptionsError, match="klingon"):
        EvaluateOptions(models=("x",), data=str(data), language="klingon")
    assert EvaluateOptions(models=["x"], data=str(data), language="English").language == "en"


def fake_training_folder(folder):
    """What a training run leaves for curves: trainer_state.json in a checkpoint and TensorBoard events."""
    from torch.utils.tensorboard import SummaryWriter

    ckpt = folder / "checkpoint-20"
    ckpt.mkdir(parents=True)
    history = [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4, "epoch": s / 10} for s in (5, 10, 15, 20)]
    history += [{"step": s, "eval_loss": 2.5 / s, "eval_wer": 0.5 / s} for s in (10, 20)]
    (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 20}))
    older = folder / "checkpoint-5"  # sorts after checkpoint-20 by name: the step must decide
    older.mkdir()
    (older / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 5, "loss": 9.9}]}))
    writer = SummaryWriter(log_dir=str(folder / "runs" / "run1"))
    for s in (10, 20):
        writer.add_scalar("eval/cer", 0.3 / s, s)
        writer.add_scalar("eval/wer", 99.0, s)  # trainer_state.json already has eval/wer: it wins
    writer.close()
    return folder


def test_read_curves(tmp_path):
    folder = fake_training_folder(tmp_path / "out")
    curves = read_curves(folder)
    assert curves["train/loss"] == [(5, 0.4), (10, 0.2), (15, 2.0 / 15), (20, 0.1)]
    assert curves["eval/wer"] == [(10, 0.05), (20, 0.025)]
    assert curves["eval/cer"] == [(10, pytest.approx(0.03)), (20, pytest.approx(0.015))]
    assert "epoch" not in curves and "train/epoch" not in curves
    assert loss_tags(curves) == ["train/loss", "eval/loss"]
    assert error_rate_tags(curves) == ["eval/cer", "eval/wer"]
    plots = training_plots(folder)
    assert set(plots) == {"loss", "eval_error_rate"} and all(p.startswith(PNG_MAGIC) for p in plots.values())
    assert read_curves(tmp_path / "empty") == {}


def test_outputs(tmp_path):
    folder = fake_training_folder(tmp_path / "run")
    failures = [None, None, None, "audio file is damaged"]
    evaluation = Evaluation("/data/manifest.json", [
        _result("bundled:tiny.en", BASE_HYPS),
        _result("run", TUNED_HYPS[:3] + [""], failures, training_folder=str(folder))])
    files = write_outputs(evaluation, tmp_path / "eval", worst=3)
    assert {"utterances-bundled-tiny.en.csv", "utterances-run.csv", "results.json", "report.md", "report.html",
            "curves-run-loss.png", "curves-run-eval_error_rate.png"} <= set(files)

    with open(files["utterances-bundled-tiny.en.csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [r.audio_path for r in ROWS]
    assert rows[2]["reference"] == "這是一個測試。" and rows[2]["hypothesis"] == "这是一个"
    assert rows[2]["metric"] == "cer" and rows[2]["errors"] == "2" and rows[2]["deletions"] == "2"
    assert rows[2]["normalized_reference"] == "这是一个测试"
    with open(files["utterances-run.csv"], newline="", encoding="utf-8") as f:
        tuned = list(csv.DictReader(f))
    assert tuned[3]["failure"] == "audio file is damaged" and tuned[3]["errors"] == "2"

    results = json.loads(files["results.json"].read_text())
    en = next(s for s in results["models"][0]["scores"] if s["language"] == "en")
    # normalised: "the cat sat on the mat" / "it costs $20" / "hello there": 11 words, 4 substituted
    assert en["wer"] == pytest.approx(4 / 11) and en["wer_substitutions"] == 4 and en["wer_deletions"] == 0

    md = files["report.md"].read_text()
    assert "| bundled:tiny.en | en | 3 | **36.36%**" in md
    assert "![Training and evaluation loss: run](curves-run-loss.png)" in md
    # rows 1 and 3 better; row 2 equal after normalisation; row 4 failed: 2 deletions, as many as 2 substitutions
    assert "| run | 2 | 0 | 2 |" in md

    page = files["report.html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # self-contained: every src is a data URI, nothing links out
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for src in sources:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<script" not in page and "這是一個測試。" in page
    evaluation.results[0].utterances[0] = evaluation.results[0].utterances[0].__class__(
        99, "/x.wav", "en", "<b>bold</b>", "x", evaluation.results[0].utterances[0].scores)
    page = (write_outputs(evaluation, tmp_path / "eval2", worst=10)["report.html"]).read_text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page


def test_evaluate_base_against_adapter(english_clips, tmp_path):
    """The real path: bundled tiny.en and a LoRA adapter (with training curves) on espeak-ng speech."""
    from whisper_lora.evaluate import evaluate

    from .adapter_helpers import make_adapter

    clips = english_clips[:3]
    manifest = tmp_path / "test.json"
    manifest.write_text(json.dumps([{"audio_path": str(p), "text": t} for p, t in clips]))
    run = fake_training_folder(make_adapter(tmp_path / "run", base="bundled:tiny.en", scale=0.01))
    evaluation = evaluate(EvaluateOptions(models=("bundled:tiny.en", str(run)), data=str(manifest),
                                          output_dir=str(tmp_path / "eval"), batch_size=4, precision="fp32"))
    base, tuned = evaluation.results
    assert (base.label, tuned.label) == ("bundled:tiny.en", "run") and tuned.training_folder == str(run)
    assert len(base.by_language) == 1
    assert base.by_language["en"].wer < 0.5  # tiny.en nearly gets these sentences right
    for result in (base, tuned):
        with open(evaluation.files[f"utterances-{result.label.replace(':', '-')}.csv"], encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [r["reference"] for r in rows] == [t for _, t in clips]
        assert all(r["hypothesis"].strip() for r in rows)
        # the corpus figure equals jiwer's on the same (normalised) strings
        refs = [r["normalized_reference"] for r in rows]
        hyps = [r["normalized_hypothesis"] for r in rows]
        assert result.by_language["en"].wer == pytest.approx(jiwer.wer(refs, hyps))
        assert result.by_language["en"].raw_wer == pytest.approx(
            jiwer.wer([r["reference"] for r in rows], [r["hypothesis"] for r in rows]))
    page = evaluation.files["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "bundled:tiny.en" in page
