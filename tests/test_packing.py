"""Packed decoding never hands a file another file's words: real tiny.en decodes of espeak-ng
clips of many lengths, one-word clips, noise and silence, in many mixes and orders, in fp32 (with
the CPU default's int8 output head too) and in bf16 autocast (where Whisper's timestamps in a
packed window go wrong most often)."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from whisper_lora.audio import SAMPLE_RATE, load_audio
from whisper_lora.decoding.packing import words
from whisper_lora.transcribe import TranscribeOptions, Transcriber

from .conftest import SENTENCES

MORE_SENTENCES = [
    "Seven.",
    "Hello.",
    "Thank you.",
    "My brother plays the violin in a small orchestra every Sunday afternoon.",
    "Turn left at the bakery and walk two blocks.",
    "Rain is expected tomorrow.",
]
# Words any two English sentences may share: sharing them says nothing of whose words they are.
FUNCTION_WORDS = set("a an the and but or so to of in on at for with from by is are was be it its i you "
                     "he she we they me my your our his her their this that there what".split())
# The same kind of speech in a second voice: a neighbour that sounds different.
OTHER_VOICE = [("Bring your umbrella to the office.", "en-gb"), ("Dinner is ready.", "en-gb")]


@pytest.fixture(scope="module")
def mixed_clips(say):
    """(text, audio) of 14 speech clips of 0.8-4.3 s, two voices, noise and two silences."""
    clips = [(text, load_audio(say(text))) for text in SENTENCES + MORE_SENTENCES]
    clips += [(text, load_audio(say(text, voice=voice))) for text, voice in OTHER_VOICE]
    rng = np.random.default_rng(0)
    clips.append(("<noise>", rng.normal(0, 0.03, 2 * SAMPLE_RATE).astype(np.float32)))
    clips.append(("<silence>", np.zeros(3 * SAMPLE_RATE, dtype=np.float32)))
    clips.append(("<short silence>", np.zeros(SAMPLE_RATE // 2, dtype=np.float32)))
    return clips


def _text(decoded) -> str:
    return " ".join(s.text for s in decoded.segments)


@pytest.mark.slow
@pytest.mark.parametrize("precision, trials", [("auto", 6), ("fp32", 3), ("bf16", 2)])
def test_no_packed_file_gets_another_files_words(bundled_tiny_en, mixed_clips, precision, trials):
    """Random mixes (subsets, orders, batch sizes) of the clips, packed, against each clip decoded
    alone in the same precision: no packed file shares more words with another file's alone
    transcript than with its own (or with what it says: tiny.en mishears some clips alone), silence
    stays empty, and every time is within its file. Function words do not count."""
    model, processor = bundled_tiny_en
    options = TranscribeOptions(precision=precision, return_timestamps=True)
    names = [name for name, _ in mixed_clips]
    audios = [audio for _, audio in mixed_clips]
    alone = Transcriber.from_model(model, processor, replace(options, pack=False)).backend.decode_short(audios)
    alone_words = [words(_text(d)) - FUNCTION_WORDS for d in alone]
    assert all(not alone[i].segments for i, n in enumerate(names) if "silence" in n)
    assert sum(bool(w) for w in alone_words) >= 13  # tiny.en hears the speech clips

    rng = random.Random(f"packing-{precision}")
    for trial in range(trials):
        picked = rng.sample(range(len(audios)), rng.randint(8, len(audios)))
        batch_size = rng.choice([2, 4, 16])
        backend = Transcriber.from_model(model, processor, replace(options, batch_size=batch_size)).backend
        # every path the defaults can take on a CPU: auto is fp32 with the int8 output head
        assert backend.packing and backend.uses_int8_head == (precision == "auto")
        torch.manual_seed(trial)  # the temperature fallback samples
        packed = backend.decode_short([audios[i] for i in picked])
        for i, dec in zip(picked, packed):
            got = words(_text(dec)) - FUNCTION_WORDS
            own = max(len(got & alone_words[i]), len(got & words(names[i])))
            for j in range(len(audios)):
                if j != i and alone_words[j] != alone_words[i]:
                    assert len(got & alone_words[j]) <= own, (
                        f"trial {trial}: {names[i]!r} packed as {_text(dec)!r}, more like {names[j]!r} "
                        f"({_text(alone[j])!r}) than its own {_text(alone[i])!r}")
            if "silence" in names[i]:
                assert not dec.segments, (names[i], _text(dec))
            duration = len(audios[i]) / SAMPLE_RATE
            assert all(0 <= s.start <= s.end <= duration for s in dec.segments), (names[i], dec.segments)
