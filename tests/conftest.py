"""Shared fixtures: real speech from espeak-ng, a tiny random-init Whisper, the real bundled tiny.en."""

from __future__ import annotations

import os

import pytest

# Tests run offline: the hub is never reached.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

# Short English sentences Whisper tiny.en gets (nearly) right on espeak-ng's en-us voice.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get home tonight.",
    "The weather is very nice today.",
    "I would like a cup of coffee.",
    "We will meet at the station at nine o'clock.",
    "She opened the window to let in some fresh air.",
]


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def say(speech_dir):
    """say(text, voice="en-us", speed=160) -> Path of a WAV file of espeak-ng speaking text."""
    from whisper_lora.synthetic.tts import espeak_available, synthesize_cached

    if not espeak_available():
        pytest.fail("espeak-ng is missing: run `make setup` (it installs espeak-ng)")

    def _say(text, voice="en-us", speed=160, pitch=50):
        return synthesize_cached(text, speech_dir, voice=voice, speed=speed, pitch=pitch)

    return _say


@pytest.fixture(scope="session")
def english_clips(say):
    """(path, text) for each of SENTENCES."""
    return [(say(t), t) for t in SENTENCES]


@pytest.fixture(scope="session")
def tiny_random():
    """A tiny random-init English-only Whisper (2+2 layers, d_model 64) and a real processor."""
    from whisper_lora.models.testing import tiny_random_model

    return tiny_random_model(multilingual=False)


@pytest.fixture(scope="session")
def tiny_random_multilingual():
    from whisper_lora.models.testing import tiny_random_model

    return tiny_random_model(multilingual=True)


@pytest.fixture(scope="session")
def bundled_tiny_en():
    """The real OpenAI tiny.en weights from the offline extra, converted to HF."""
    from whisper_lora import load_model

    return load_model("bundled:tiny.en")


def _label_maker(model_and_processor):
    from whisper_lora.tokens import Tokens
    from whisper_lora.training.labels import LabelMaker

    model, processor = model_and_processor
    return model, processor, LabelMaker(processor.tokenizer, Tokens.of(model))


@pytest.fixture(scope="session")
def english(tiny_random):
    """(model, processor, LabelMaker) of the tiny random English-only Whisper."""
    return _label_maker(tiny_random)


@pytest.fixture(scope="session")
def multilingual(tiny_random_multilingual):
    """(model, processor, LabelMaker) of the tiny random multilingual Whisper."""
    return _label_maker(tiny_random_multilingual)
