"""Training targets (training/labels.py): label ids with and without timestamps, the speech
span a timestamp target falls back on, and the stable share of timestamped rows."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_lora.data.manifest import Row
from whisper_lora.training.labels import LabelMaker, speech_span, timestamped_rows


def ids(tokenizer, *tokens):
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def test_english_only_labels_have_no_language_or_task_and_no_start_token(english):
    model, processor, maker = english
    tok = processor.tokenizer
    labels = maker.labels("Hello world.", "en")
    assert labels[:1] == ids(tok, "<|notimestamps|>")
    assert labels[-1] == ids(tok, "<|endoftext|>")[0]
    assert model.config.decoder_start_token_id not in labels  # the model adds it: never twice
    # Text as Whisper writes it: with a leading space, so the first word is "ĠHello".
    assert tok.convert_ids_to_tokens(labels[1]) == "ĠHello"
    assert tok.decode(labels, skip_special_tokens=True) == " Hello world."


def test_multilingual_labels_carry_language_and_task(multilingual):
    model, processor, maker = multilingual
    tok = processor.tokenizer
    assert maker.labels("Bonjour.", "fr")[:3] == ids(tok, "<|fr|>", "<|transcribe|>", "<|notimestamps|>")
    translate = LabelMaker(tok, maker.tokens, task="translate")
    assert translate.labels("Bonjour.", "fr")[:3] == ids(tok, "<|fr|>", "<|translate|>", "<|notimestamps|>")
    # Chinese is written without spaces: no leading space token.
    zh = maker.labels("你好", "zh")
    assert zh[:3] == ids(tok, "<|zh|>", "<|transcribe|>", "<|notimestamps|>")
    assert tok.decode(zh[3:-1]) == "你好"


def test_timestamped_labels(multilingual, english):
    _, processor, maker = multilingual
    tok = processor.tokenizer
    segments = [{"start": 0.0, "end": 1.5, "text": "One."}, {"start": 2.04, "end": 3.3, "text": "Two."}]
    labels = maker.labels("One. Two.", "en", segments, timestamps=True)
    assert labels[:3] == ids(tok, "<|en|>", "<|transcribe|>", "<|0.00|>")  # no <|notimestamps|>
    stamps = [tok.convert_ids_to_tokens(i) for i in labels if i >= maker.tokens.timestamp_begin]
    assert stamps == ["<|0.00|>", "<|1.50|>", "<|2.04|>", "<|3.30|>"]
    assert tok.decode(labels, skip_special_tokens=True).split() == ["One.", "Two."]
    _, processor_en, maker_en = english
    labels = maker_en.labels("One.", "en", segments[:1], timestamps=True)
    assert processor_en.tokenizer.convert_ids_to_tokens(labels[0]) == "<|0.00|>"


def test_speech_span_finds_the_sound():
    rate = 16000
    t = np.arange(int(0.5 * rate)) / rate
    samples = np.concatenate([np.zeros(int(0.3 * rate)), 0.5 * np.sin(2 * np.pi * 220 * t),
                              np.zeros(int(0.4 * rate))]).astype(np.float32)
    start, end = speech_span(samples, rate)
    assert start == pytest.approx(0.3, abs=0.021) and end == pytest.approx(0.8, abs=0.021)
    assert speech_span(np.zeros(rate, np.float32), rate) == (0.0, 1.0)  # silence: the whole clip


def test_timestamped_rows_is_a_stable_share():
    rows = [Row(n, f"/a{n}.wav", "x") for n in range(1, 1001)]
    chosen = timestamped_rows(rows, 0.3, seed=1)
    assert len(chosen) == 300
    assert chosen == timestamped_rows(rows, 0.3, seed=1)  # every process and resume agree
    assert timestamped_rows(rows, 0.0, 1) == frozenset() and len(timestamped_rows(rows, 1.0, 1)) == 1000
