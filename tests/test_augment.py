"""Training levers (training/augment.py, SpecAugment, rsLoRA/DoRA, label smoothing, early stopping):
each does what its flag says, on real code paths with the tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from whisper_lora.audio import SAMPLE_RATE
from whisper_lora.errors import OptionsError
from whisper_lora.training.augment import Augment, add_noise, speed
from whisper_lora.training.options import TrainOptions


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_together(factor):
    out = speed(tone(2.0), factor)
    assert len(out) == pytest.approx(2.0 * SAMPLE_RATE / factor, abs=2)
    assert dominant_hz(out) == pytest.approx(220.0 * factor, abs=2.0)


def test_speed_leaves_a_clip_that_would_outgrow_the_window():
    clip = tone(29.0)
    assert speed(clip, 0.9) is clip
    assert len(speed(clip, 1.1)) < len(clip)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_noise_has_the_asked_signal_to_noise_ratio(snr_db):
    clean = tone(3.0)
    noisy = add_noise(clean, snr_db, np.random.default_rng(0))
    noise = noisy.astype(np.float64) - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=0.3)
    assert np.abs(noisy).max() <= 1.0


def test_augment_draws_anew_each_read_and_repeats_with_the_seed():
    aug = Augment(speed_perturb=True, noise_snr=10.0, seed=3)
    clip = tone(2.0)
    versions = [aug(clip, index=7, draw=d) for d in range(12)]
    lengths = {len(v) for v in versions}
    assert len(lengths) > 1, "every epoch hears another speed"
    assert np.array_equal(aug(clip, 7, 5), versions[5]), "same seed, item and read: same audio"
    other_seed = [Augment(True, 10.0, seed=4)(clip, 7, d) for d in range(12)]
    assert any(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(versions, other_seed))
    # Rows with their own segment times keep their length (the times would no longer match).
    assert all(len(aug(clip, 7, d, has_segments=True)) == len(clip) for d in range(12))
    assert not Augment().active


def test_speech_dataset_augments_training_items_only(english, english_clips, tmp_path):
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.training.dataset import SpeechDataset

    model, processor, labels = english
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"audio_path": str(p), "text": t} for p, t in english_clips[:2]]))
    rows = read_manifest(manifest)
    plain = SpeechDataset(rows, processor, labels, "en", raw=True)
    augmented = SpeechDataset(rows, processor, labels, "en", raw=True, augment=Augment(speed_perturb=True, seed=1))
    lengths = {len(augmented[0]["audio"]) for _ in range(10)}
    assert len(lengths) > 1
    assert {len(plain[0]["audio"]) for _ in range(3)} == {len(plain[0]["audio"])}


@pytest.mark.parametrize("changes, message", [
    ({"mask_time_prob": 1.0}, "--mask_time_prob"),
    ({"mask_feature_prob": -0.1}, "--mask_feature_prob"),
    ({"noise_snr": 99.0}, "--noise_snr 99.0"),
    ({"label_smoothing": 1.0}, "--label_smoothing"),
    ({"early_stopping_patience": 0}, "--early_stopping_patience 0"),
    ({"spec_augment": True, "freeze_encoder": True}, "--spec_augment with --freeze_encoder"),
    ({"speed_perturb": True, "freeze_encoder": True}, "--speed_perturb with --freeze_encoder"),
    ({"freeze_encoder": True, "freeze_decoder": True}, "--freeze_encoder with --freeze_decoder"),
    ({"early_stopping_patience": 2, "validation_file": None}, "--early_stopping_patience needs a validation set"),
])
def test_bad_lever_values(tmp_path, changes, message):
    train = tmp_path / "t.json"
    train.write_text("[]")
    kw = {"validation_file": str(train), **changes}
    with pytest.raises(OptionsError, match=message.replace("(", r"\(")):
        TrainOptions(model_name_or_path="bundled:tiny.en", train_file=str(train), output_dir=str(tmp_path / "o"), **kw)


def test_spec_augment_masks_the_encoder_input_while_training_only(tiny_random):
    model, _ = tiny_random
    inner = model.model
    features = torch.randn(2, 80, 3000)
    saved = (inner.config.apply_spec_augment, inner.config.mask_time_prob, inner.config.mask_feature_prob)
    try:
        inner.config.apply_spec_augment, inner.config.mask_time_prob, inner.config.mask_feature_prob = True, 0.05, 0.05
        inner.train()
        masked = inner._mask_input_features(features.clone())
        share = (masked == 0).float().mean().item()
        assert 0.02 < share < 0.2, share
        inner.eval()
        assert torch.equal(inner._mask_input_features(features.clone()), features)
    finally:
        inner.config.apply_spec_augment, inner.config.mask_time_prob, inner.config.mask_feature_prob = saved
        inner.eval()


def test_label_smoothing_loss_is_the_smoothed_cross_entropy(tiny_random):
    from whisper_lora.training.trainer import WhisperTrainer

    model, _ = tiny_random
    torch.manual_seed(0)
    inputs = {"input_features": torch.randn(2, 80, 3000), "labels": torch.tensor([[50257, 11, 12, -100],
                                                                               [50257, 13, 14, 15]])}
    trainer = WhisperTrainer.__new__(WhisperTrainer)  # only the loss is under test
    trainer.label_smoothing = 0.1
    model.train()
    try:
        smoothed = trainer._smoothed_loss(model, dict(inputs), False)
        plain = model(**inputs).loss
    finally:
        model.eval()
    logits = model(**inputs).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), inputs["labels"].reshape(-1),
                                                 ignore_index=-100, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-4)
    assert smoothed.item() > plain.item()  # smoothing adds the cost of the uniform share


@pytest.fixture
def tiny_folder_for_levers(tiny_random, tmp_path):
    model, processor = tiny_random
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture
def lever_manifests(english_clips, tmp_path):
    rows = [{"audio_path": str(p), "text": t} for p, t in english_clips]
    (tmp_path / "train.json").write_text(json.dumps(rows[:4]))
    (tmp_path / "validation.json").write_text(json.dumps(rows[4:6]))
    return tmp_path / "train.json", tmp_path / "validation.json"


def test_every_lever_in_one_short_run(tiny_folder_for_levers, lever_manifests, tmp_path):
    """rsLoRA, DoRA, SpecAugment, speed perturbation, noise, label smoothing and early stopping
    together: the run finishes, the flags reach the adapter config and training_config.json,
    and early stopping stops a run whose validation error cannot improve."""
    from whisper_lora.cli import main

    train_file, validation_file = lever_manifests
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(tiny_folder_for_levers), "--train_file", str(train_file),
            "--validation_file", str(validation_file), "--output_dir", str(out), "--num_train_epochs", "20",
            "--per_device_train_batch_size", "2", "--eval_steps", "1", "--save_steps", "1",
            "--lora_r", "4", "--lora_alpha", "8", "--use_rslora", "--use_dora", "--spec_augment",
            "--mask_feature_prob", "0.05", "--speed_perturb", "--noise_snr", "10", "--label_smoothing", "0.1",
            "--early_stopping_patience", "2", "--learning_rate", "1e-9", "--generation_max_length", "8"]
    assert main(argv) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["use_rslora"] is True and adapter["use_dora"] is True
    flags = json.loads((out / "training_config.json").read_text())["flags"]
    assert flags["spec_augment"] and flags["speed_perturb"] and flags["noise_snr"] == 10.0
    assert flags["label_smoothing"] == 0.1
    steps = json.loads((out / "metrics.json").read_text())["global_step"]
    assert steps < 40, f"early stopping should end the 40-step run early; ran {steps}"
