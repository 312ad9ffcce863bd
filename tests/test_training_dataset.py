"""The training data set, its collation and window packing, row filtering and the encoder cache
(training/dataset.py, packing.py, encoder_cache.py), on the tiny random models; the labels
themselves: test_training_labels.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from whisper_lora.errors import ManifestError, OptionsError
from whisper_lora.data.manifest import Row
from whisper_lora.tokens import IGNORE_INDEX
from whisper_lora.training.dataset import Collator, SpeechDataset, usable_rows
from whisper_lora.training.packing import WindowPacker


def test_model_sees_start_token_once(english):
    """The collated labels, shifted by the model itself, give <|startoftranscript|> then the prefix."""
    import torch
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    model, processor, maker = english
    sot = model.config.decoder_start_token_id
    items = [{"input_features": np.zeros((80, 3000), np.float32), "labels": [sot] + maker.labels("A b c.", "en"),
              "language": "en"},
             {"input_features": np.zeros((80, 3000), np.float32), "labels": maker.labels("A.", "en"),
              "language": "en"}]
    batch = Collator(sot)(items)
    labels = batch["labels"]
    assert labels.shape[0] == 2 and (labels[:, 0] != sot).all()
    assert labels[1, len(maker.labels("A.", "en")):].eq(IGNORE_INDEX).all()  # padding is -100
    assert labels[0].ne(IGNORE_INDEX).sum() == len(maker.labels("A b c.", "en"))
    decoder_input = shift_tokens_right(labels, model.config.pad_token_id, sot)
    assert (decoder_input[:, 0] == sot).all() and (decoder_input[:, 1] != sot).all()
    with torch.no_grad():
        loss = model(input_features=batch["input_features"], labels=labels).loss
    assert torch.isfinite(loss)


def test_dataset_items(english, english_clips):
    model, processor, maker = english
    rows = [Row(i + 1, str(path), text) for i, (path, text) in enumerate(english_clips[:2])]
    data = SpeechDataset(rows, processor, maker, None, timestamped=frozenset({1}))
    plain, stamped = data[0], data[1]
    assert plain["input_features"].shape == (80, 3000) and plain["language"] == "en"
    assert plain["labels"][0] == maker.tokens.no_timestamps
    first, last = stamped["labels"][0], stamped["labels"][-2]
    assert first >= maker.tokens.timestamp_begin and last > first  # one segment over the speech
    assert (last - maker.tokens.timestamp_begin) * 0.02 <= 10


def test_joined_timestamp_items(english, english_clips):
    """Timestamped training items join utterances with pauses: one segment each, in order,
    inside the joined audio; and they stay within 30 s and the label limit."""
    _, processor, maker = english
    rows = [Row(i + 1, str(path), text) for i, (path, text) in enumerate(english_clips)]
    data = SpeechDataset(rows, processor, maker, None, timestamped=frozenset(range(len(rows))), join=True, seed=1)
    tok, begin = processor.tokenizer, maker.tokens.timestamp_begin
    counts = []
    for i in range(len(rows)):
        labels = data[i]["labels"]
        stamps = [(t - begin) * 0.02 for t in labels if t >= begin]
        counts.append(len(stamps) // 2)
        assert stamps == sorted(stamps) and stamps[-1] <= 30
        assert rows[i].text.split()[0] in tok.decode(labels, skip_special_tokens=True)  # row i is in it
    assert max(counts) >= 2 and min(counts) >= 1  # some items hold several utterances
    assert data[2]["labels"] == data[2]["labels"]  # the same item every time (every process, resume)
    tight = SpeechDataset(rows, processor, maker, None, timestamped=frozenset(range(len(rows))), join=True,
                          seed=1, max_label_length=20)
    for i in range(len(rows)):  # over the limit only when row i alone is (usable_rows drops those rows)
        labels = tight[i]["labels"]
        assert len(labels) <= 20 or sum(t >= begin for t in labels) == 2


def test_packed_windows(english, english_clips):
    """A batch's clips share 30-s windows: each clip's text once, in order, within 30 s and the label
    limit; languages are never mixed; a window's first clip decides its target kind, and in a
    timestamped window each clip keeps one segment, moved to where it starts."""
    _, processor, maker = english
    rows = [Row(i + 1, str(path), text) for i, (path, text) in enumerate(english_clips)]
    stamped = frozenset({0, 1})
    data = SpeechDataset(rows, processor, maker, None, timestamped=stamped, raw=True, seed=1)
    items = [data[i] for i in range(len(rows))]
    assert "audio" in items[2] and not items[2]["timestamped"] and len(items[2]["segments"]) == 1
    assert [items[i]["timestamped"] for i in stamped] == [True, True]
    tok, begin = processor.tokenizer, maker.tokens.timestamp_begin
    for order in (items, items[::-1]):  # first the stamped clips lead a window, then the others do
        packer = WindowPacker(processor.feature_extractor, maker, 448, seed=1)
        windows = packer(order)
        assert sum(w["clips"] for w in windows) == len(items) and len(windows) < len(items)
        texts = " ".join(tok.decode(w["labels"], skip_special_tokens=True) for w in windows)
        for _, text in english_clips:
            assert texts.count(text) == 1
        for w in windows:
            assert w["timestamped"] == (w["indices"][0] in stamped)
            stamps = [(t - begin) * 0.02 for t in w["labels"] if t >= begin]
            assert len(stamps) == (2 * w["clips"] if w["timestamped"] else 0)
            assert stamps == sorted(stamps) and all(b > a for a, b in zip(stamps[1::2], stamps[2::2]))
        assert any(w["timestamped"] for w in windows) == (order is items)
    assert all(w["input_features"].shape == (80, 3000) for w in windows)
    assert [w["labels"] for w in packer(order)] == [w["labels"] for w in windows]  # same batch, same windows
    tight = WindowPacker(processor.feature_extractor, maker, 20, seed=1)(items)
    assert len(tight) > len(windows) and all(len(w["labels"]) <= 20 or w["clips"] == 1 for w in tight)
    batch = Collator(maker.tokens.start, packer=packer)(order)
    assert batch["input_features"].shape[0] == len(windows)


# --- row filtering -------------------------------------------------------------------------------

def write_manifest(folder, rows, name="m.json"):
    path = folder / name
    path.write_text(json.dumps(rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def bad_rows(tmp_path, english_clips):
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(31 * 16000, np.float32), 16000)
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(1600, np.float32), 16000)
    good = [{"audio_path": str(p), "text": t} for p, t in english_clips[:2]]
    return tmp_path, good, [
        {"audio_path": "missing.wav", "text": "nothing here"},
        {"audio_path": "broken.wav", "text": "cannot decode"},
        {"audio_path": str(english_clips[2][0]), "text": "   "},
        {"audio_path": "long.wav", "text": "too long"},
        {"audio_path": str(english_clips[3][0]), "text": "word " * 500},
        {"audio_path": "short.wav", "text": "too short"},
    ]


def test_bad_rows_are_dropped_with_reasons(english, bad_rows, caplog):
    _, _, maker = english
    folder, good, bad = bad_rows
    manifest = write_manifest(folder, good + bad)
    with caplog.at_level("WARNING"):
        rows, report = usable_rows(manifest, maker, None, max_seconds=30, min_seconds=0.5, max_label_length=448)
    assert [r.text for r in rows] == [g["text"] for g in good]
    reasons = dict(report.dropped)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "not found" in reasons[3]
    assert "decode" in reasons[4]
    assert "empty" in reasons[5]
    assert "30" in reasons[6]
    assert "max_label_length" in reasons[7]
    assert "min_duration" in reasons[8]
    assert report.kept == 2 and report.rows == 8
    assert "dropped 6 of 8 rows" in caplog.text and "row 3" in caplog.text


def test_strict_fails_on_any_bad_row(english, bad_rows):
    _, _, maker = english
    folder, good, bad = bad_rows
    manifest = write_manifest(folder, good + bad[:1])
    with pytest.raises(ManifestError, match="strict"):
        usable_rows(manifest, maker, None, max_seconds=30, strict=True)


def test_no_usable_rows_is_an_error(english, bad_rows):
    _, _, maker = english
    folder, _, bad = bad_rows
    with pytest.raises(ManifestError, match="no usable rows"):
        usable_rows(write_manifest(folder, bad), maker, None, max_seconds=30, min_seconds=0.5)


def test_label_length_limit(english, english_clips, tmp_path):
    _, _, maker = english
    path, text = english_clips[0]
    manifest = write_manifest(tmp_path, [{"audio_path": str(path), "text": text}])
    n = maker.longest_labels(Row(1, str(path), text), "en")
    assert usable_rows(manifest, maker, None, max_seconds=30, max_label_length=n)[1].kept == 1
    with pytest.raises(ManifestError, match="max_label_length"):
        usable_rows(manifest, maker, None, max_seconds=30, max_label_length=n - 1)


def test_multilingual_rows_need_a_language(multilingual, english_clips, tmp_path):
    _, processor, maker = multilingual
    (path, text), (path2, text2) = english_clips[:2]
    manifest = write_manifest(tmp_path, [{"audio_path": str(path), "text": text, "language": "en"},
                                         {"audio_path": str(path2), "text": text2}])
    with pytest.raises(OptionsError, match="rows 2 have no \"language\""):
        usable_rows(manifest, maker, None, max_seconds=30)
    rows, _ = usable_rows(manifest, maker, "de", max_seconds=30)
    data = SpeechDataset(rows, processor, maker, "de")
    assert data.languages == ["en", "de"]  # a row's own language wins over --language


def test_max_samples_takes_the_first_usable_rows(english, english_clips, tmp_path):
    _, _, maker = english
    manifest = write_manifest(tmp_path, [{"audio_path": "gone.wav", "text": "x"}]
                              + [{"audio_path": str(p), "text": t} for p, t in english_clips[:3]])
    rows, report = usable_rows(manifest, maker, None, max_seconds=30, max_samples=2)
    assert [r.number for r in rows] == [2, 3] and report.kept == 2 and len(report.dropped) == 1


# --- encoder cache (--freeze_encoder) ---------------------------------------------------------------

def test_encoder_cache_gives_the_loss_of_a_full_forward(english, english_clips):
    """Cached encoder outputs give the same loss as running the encoder; the budget is kept."""
    import torch

    from whisper_lora.training.encoder_cache import EncoderCache

    model, processor, maker = english
    rows = [Row(i + 1, str(path), text) for i, (path, text) in enumerate(english_clips[:3])]
    data = SpeechDataset(rows, processor, maker, None)
    batch = Collator(model.config.decoder_start_token_id)([data[i] for i in range(3)])
    assert batch["index"] == [0, 1, 2]
    encoder = model.get_encoder()
    with torch.no_grad():
        direct = model(input_features=batch["input_features"], labels=batch["labels"]).loss
        one_clip = encoder(batch["input_features"][:1]).last_hidden_state[0]
        cache = EncoderCache(max_bytes=2 * one_clip.numel() * one_clip.element_size())
        for _ in range(2):  # first computes, then looks up
            hidden = cache(encoder, batch["input_features"], batch["index"])
            cached = model(encoder_outputs=(hidden,), labels=batch["labels"]).loss
            assert torch.allclose(cached, direct, atol=1e-5)
    assert sorted(cache.stored) == [0, 1]  # room for two clips: the third is encoded every time
    # A stale entry would be used as is: the cache trusts that index i is always the same clip.
    cache.stored[0] = torch.zeros_like(cache.stored[0])
    with torch.no_grad():
        changed = model(encoder_outputs=(cache(encoder, batch["input_features"], batch["index"]),),
                        labels=batch["labels"]).loss
    assert not torch.allclose(changed, direct, atol=1e-3)
