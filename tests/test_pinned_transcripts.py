"""The greedy and beam transcripts of the real bundled tiny.en on conftest's sentences, pinned, so
that no speed change to the transformers backend alters them silently (issue 34).

tiny.en gets several of these espeak-ng clips wrong, which is what makes them worth pinning: a
wrong word is where a changed computation shows first. The pins are what the backend wrote before
issue 34's speed work (commit bb75dfd) and after it. They are taken with the encoder in fp32, the
same on every CPU; where the CPU multiplies bf16 in hardware, precision auto runs the encoder in
bf16 (decoding/hf.py), which may change a word (benchmarks/encoder_precision.py): that path is
held to a few words of the pins instead.
"""

from __future__ import annotations

import pytest

from whisper_lora.audio import load_audio
from whisper_lora.devices import cpu_has_native_bf16
from whisper_lora.scoring.metrics import error_rates
from whisper_lora.transcribe import Transcriber, TranscribeOptions

GREEDY = ["The quick round-fark stump over the lazy nog.",
          "Please call me back when you get home tonight.",
          "But whenever it's very nice today.",
          "I will die, Cuckar from coffee.",
          "We will meet at the station at the island.",
          "She opened the window to let in some fresh air."]
# one file per window: the fourth clip hears less context than packed
ALONE = GREEDY[:3] + ["I will die, Kaka, and coffee."] + GREEDY[4:]
ALONE_ENDS = [2.84, 2.5, 1.8, 1.6, 2.16, 2.56]
# beam 5 in fp32: beam search is where a near tie shows first (with the int8 output head two of
# these six come out otherwise); fp32 leaves the fewest ties to how a CPU rounds
BEAM = ["The quick brown fox jumped over the lazy nog.",
        "Please call me back when you get home to hide.",
        "But wherever is very nice today.",
        "I would like a cup and coffee.",
        "We will meet at the station at either clock.",
        "She opened the window to let in some fresh air."]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(english_clips):
    return [load_audio(path) for path, _ in english_clips]


def exact(options: TranscribeOptions) -> Transcriber:
    """The defaults but with the encoder in fp32 whatever this CPU has."""
    t = Transcriber.from_spec("bundled:tiny.en", options)
    t.backend._bf16_encoder = False
    return t


@pytest.mark.parametrize("options, want", [
    (TranscribeOptions(), GREEDY),  # the defaults: packed, int8 output head
    (TranscribeOptions(precision="fp32", pack=False), GREEDY),
    (TranscribeOptions(beam_size=5, precision="fp32"), BEAM),
], ids=["defaults", "fp32-alone", "beam5"])
def test_transcripts_are_the_pinned_ones(clips, options, want):
    assert [r.text for r in exact(options).transcribe_arrays(clips)] == want


def test_segment_times_are_the_pinned_ones(clips):
    results = exact(TranscribeOptions(pack=False, return_timestamps=True)).transcribe_arrays(clips)
    assert [r.text for r in results] == ALONE
    assert [[(s.start, s.end) for s in r.segments] for r in results] == [[(0.0, end)] for end in ALONE_ENDS]


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="the bf16 encoder is used only where the CPU has bf16")
def test_the_bf16_encoder_keeps_to_the_pins(clips):
    t = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions())
    assert t.backend.uses_bf16_encoder
    got = [r.text for r in t.transcribe_arrays(clips)]
    # measured on an AVX512-BF16 EPYC: the same six texts; AMX rounds differently, so a word may go
    assert error_rates(GREEDY, got, "en").words.errors <= 2


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_the_bf16_encoder_is_chosen_only_by_auto_on_a_bf16_cpu(tiny_random, precision):
    model, processor = tiny_random
    backend = Transcriber.from_model(model, processor, TranscribeOptions(precision=precision, device="cpu")).backend
    # bf16 asked for autocasts the whole model instead (HFBackend._decoding)
    assert backend.uses_bf16_encoder == (precision == "auto" and cpu_has_native_bf16())
