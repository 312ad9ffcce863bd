"""Word timestamps (decoding/words.py), prompts (--initial_prompt, --hotwords) and align-heads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from whisper_lora.decoding import words
from whisper_lora.decoding.results import Segment, Word
from whisper_lora.errors import OptionsError
from whisper_lora.transcribe import TranscribeOptions, Transcriber

# tiny.en hears "Kubernetes" as "Cuba needs" (or "Cubanites") unless a prompt spells it.
RARE_WORDS = "We deployed the cluster with Kubernetes and Grafana."
RARE_PROMPT = "Kubernetes, Grafana"
SINGLE_WORDS = "apple river yellow morning window garden music paper silver doctor winter family market coffee".split()


# ---- the pieces ------------------------------------------------------------------------------------

def test_dtw_follows_the_cheap_cells():
    cost = np.ones((3, 8))
    cheap = [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6), (2, 7)]
    for i, j in cheap:
        cost[i, j] = 0.0
    tokens, frames = words.dtw(cost)
    assert list(zip(tokens, frames)) == cheap


def test_split_words_on_spaces_and_on_characters(tiny_random):
    _, processor = tiny_random
    tok = processor.tokenizer
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = tok.encode(" The quick brown fox, jumps.", add_special_tokens=False)
    found, found_tokens = words.split_words(ids, tok.decode, "en", eot)
    assert found == [" The", " quick", " brown", " fox", ",", " jumps", "."]
    assert sum(found_tokens, []) == ids
    ids = tok.encode("你好世界", add_special_tokens=False)  # byte-level: a character can take several tokens
    found, found_tokens = words.split_words(ids, tok.decode, "zh", eot)
    assert found == ["你", "好", "世", "界"] and sum(found_tokens, []) == ids


def test_place_gives_each_segment_its_words_and_joins_punctuation():
    decode = {1: " Hello", 2: ",", 3: " world", 4: " again", 5: "."}.get

    def text(ids):
        return "".join(decode(i) for i in ids)

    timings = [words.Timing(" Hello", [1], 0.0, 0.4, 0.9), words.Timing(",", [2], 0.4, 0.5, 0.8),
               words.Timing(" world", [3], 0.5, 1.0, 0.7), words.Timing(" again", [4], 1.5, 2.0, 0.6),
               words.Timing(".", [5], 2.0, 2.1, 0.5)]
    segments = words.place([(0.0, 1.0, [1, 2, 3]), (1.4, 2.1, [4, 5])], timings, text)
    assert [s.text for s in segments] == ["Hello, world", "again."]
    assert [[w.word for w in s.words] for s in segments] == [[" Hello,", " world"], [" again."]]
    assert segments[1].words[0].start == pytest.approx(1.5)  # the segment starts with its first word
    assert segments[1].start == pytest.approx(1.5)


def _two_words():
    """3 s of audio: a tone for word 1 at 0.5-1.0 s, for word 2 at 1.6-2.4 s, silence between."""
    sr = 16000
    audio = np.zeros(3 * sr, dtype=np.float32)
    audio[int(0.5 * sr):int(1.0 * sr)] = 0.3 * np.sin(np.arange(int(0.5 * sr)) / 5)
    audio[int(1.6 * sr):int(2.4 * sr)] = 0.3 * np.sin(np.arange(int(0.8 * sr)) / 5)
    return audio


def test_fit_to_sound_moves_words_to_the_edges_of_their_sound():
    sr = 16000
    audio = _two_words()
    given = [Segment(0.2, 2.5, "one two", (Word(0.2, 1.3, " one", 0.9), Word(1.8, 2.5, " two", 0.9)))]
    seg, = words.fit_to_sound(given, audio)
    # word 1 started in the pause (moved forward), word 2 inside its sound (moved back to its start)
    assert [(w.start, w.end) for w in seg.words] == [pytest.approx((0.5, 1.0)), pytest.approx((1.6, 2.4))]
    assert (seg.start, seg.end) == pytest.approx((0.5, 2.4))
    # in sound without pauses, words meet inside the sound and stay where they were
    hum = np.full(4 * sr, 0.2, dtype=np.float32)
    inside = [Segment(1.0, 2.5, "one two", (Word(1.0, 1.5, " one", 0.9), Word(2.0, 2.5, " two", 0.9)))]
    assert words.fit_to_sound(inside, hum)[0].words == inside[0].words



def test_a_start_in_the_tail_of_the_word_before_moves_past_the_pause_to_its_own_sound():
    sr = 16000
    audio = _two_words()
    # DTW gave word 2 the end of word 1's sound and the pause: it starts where its sound does
    given = [Segment(0.5, 2.4, "one two", (Word(0.5, 0.9, " one", 0.9), Word(0.9, 2.4, " two", 0.9)))]
    seg, = words.fit_to_sound(given, audio)
    assert [(w.start, w.end) for w in seg.words] == [pytest.approx((0.5, 1.0)), pytest.approx((1.6, 2.4))]
    # a short quiet inside the span (a stop consonant's closure, under PAUSE_SECONDS) moves nothing
    audio[int(1.0 * sr):int(1.1 * sr)] = 0.3 * np.sin(np.arange(int(0.1 * sr)) / 5)
    audio[int(1.1 * sr):int(1.2 * sr)] = 0
    audio[int(1.2 * sr):int(1.6 * sr)] = 0.3 * np.sin(np.arange(int(0.4 * sr)) / 5)
    joined = [Segment(0.5, 2.4, "one two", (Word(0.5, 1.05, " one", 0.9), Word(1.05, 2.4, " two", 0.9)))]
    assert words.fit_to_sound(joined, audio)[0].words[1].start == pytest.approx(1.05)

def test_prompt_options_are_checked_and_words_turn_timestamps_on():
    assert TranscribeOptions(word_timestamps=True).return_timestamps
    with pytest.raises(OptionsError, match="--initial_prompt"):
        TranscribeOptions(initial_prompt="  ")
    with pytest.raises(OptionsError, match="--hotwords"):
        TranscribeOptions(hotwords="")


# ---- through the transcriber, on a tiny random model --------------------------------------------

def _check_words(result):
    assert result.segments
    previous = 0.0
    for seg in result.segments:
        assert seg.words, seg
        assert "".join(w.word for w in seg.words).split() == seg.text.split()
        for w in seg.words:
            assert 0.0 <= w.start <= w.end <= result.duration + 1e-6 and 0.0 <= w.probability <= 1.0
            assert w.start >= previous - 1e-6
            previous = w.start


def test_words_on_a_random_model_plain_and_with_lora(tiny_random, english_clips, tmp_path):
    """Every decoded word has times and a probability, on the model and on a LoRA adapter over it;
    the writers put them out: words in JSON, a row per word in TSV, inline times in VTT."""
    from peft import LoraConfig, get_peft_model

    from whisper_lora.decoding.writers import open_writer
    from whisper_lora.models.testing import tiny_random_model

    model, processor = tiny_random
    path = str(english_clips[0][0])
    options = TranscribeOptions(word_timestamps=True, max_new_tokens=24, temperatures=(0.0,),
                                compression_ratio_threshold=None, logprob_threshold=None, silence_threshold_db=None)
    result = Transcriber.from_model(model, processor, options).transcribe_files([path]).__next__()
    _check_words(result)
    base, _ = tiny_random_model(multilingual=False)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    _check_words(next(Transcriber.from_model(lora, processor, options).transcribe_files([path])))
    for fmt in ("json", "tsv", "vtt"):
        with open_writer(tmp_path / f"out.{fmt}", 1) as writer:
            writer.add(result)
    saved = json.loads((tmp_path / "out.json").read_text())["results"][0]["segments"]
    assert [w["word"] for s in saved for w in s["words"]] == [w.word for s in result.segments for w in s.words]
    rows = (tmp_path / "out.tsv").read_text().splitlines()
    assert rows[0] == "path\tstart\tend\tword\tprobability"
    assert len(rows) == 1 + sum(len(s.words) for s in result.segments)
    n_words = sum(len(s.words) for s in result.segments)
    if n_words > len(result.segments):
        assert "<00:00:" in (tmp_path / "out.vtt").read_text()


# ---- real speech, the bundled tiny.en ----------------------------------------------------------------

@pytest.fixture(scope="module")
def word_windows(say):
    """Single words joined with pauses: (audio, [(word, start, end)]) whose times are known."""
    from whisper_lora.audio import load_audio
    from whisper_lora.data.joined import join_clips

    clips = [(load_audio(say(w, speed=150)), w) for w in SINGLE_WORDS]
    return [(w.audio, list(zip(w.texts, w.starts, w.ends)))
            for w in (join_clips(clips[:7], gap=0.5)[0], join_clips(clips[7:], gap=0.7)[0])]


def _words(spec_or_transcriber, audios, **options):
    t = spec_or_transcriber
    if isinstance(t, str):
        t = Transcriber.from_spec(t, TranscribeOptions(language="en", word_timestamps=True, pack=False,
                                                       temperatures=(0.0,), **options))
    return [[(w.word.strip(" ,.").lower(), w.start, w.end) for s in r.segments for w in s.words]
            for r in t.transcribe_arrays(audios)]


def _errors(hyps, truth):
    starts, ends = [], []
    for hyp, ref in zip(hyps, truth):
        ref = {word: (a, b) for word, a, b in ref}
        for word, a, b in hyp:
            if word in ref:
                starts.append(abs(a - ref[word][0]))
                ends.append(abs(b - ref[word][1]))
    return len(starts), float(np.mean(starts)), float(np.mean(ends))


@pytest.mark.slow
def test_word_times_match_known_boundaries_on_base_and_adapter_and_both_backends(word_windows, tmp_path):
    """Words of the joined clips start and end where they were spoken (within 0.1 s on average),
    on tiny.en and on a LoRA adapter over it; the ct2 backend gives the transformers backend's
    times on the same weights; without fitting times to the sound, starts are much worse."""
    from .adapter_helpers import make_adapter
    from whisper_lora.models import ct2_folder

    audios = [a for a, _ in word_windows]
    truth = [t for _, t in word_windows]
    n_words = sum(map(len, truth))
    hf = _words("bundled:tiny.en", audios, precision="fp32")
    matched, start, end = _errors(hf, truth)
    assert matched >= 0.8 * n_words and start < 0.1 and end < 0.1, (matched, start, end)
    ct2 = _words(str(ct2_folder("bundled:tiny.en")), audios, backend="ct2", compute_type="float32")
    for ours, theirs in zip(hf, ct2):
        if [w for w, _, _ in ours] == [w for w, _, _ in theirs]:
            assert np.allclose([t[1:] for t in ours], [t[1:] for t in theirs], atol=0.021)
    adapter = make_adapter(tmp_path / "adapter", seed=2, scale=0.03)
    matched, start, end = _errors(_words(str(adapter), audios, precision="fp32"), truth)
    assert matched >= 0.8 * n_words and start < 0.1 and end < 0.1, (matched, start, end)
    words.FIT_TO_SOUND = False
    try:
        _, raw_start, _ = _errors(_words("bundled:tiny.en", audios, precision="fp32"), truth)
    finally:
        words.FIT_TO_SOUND = True
    assert raw_start > start + 0.05  # the fitting is what puts the starts right


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "ct2"])
def test_a_prompt_spells_a_rare_word_right(say, backend):
    from whisper_lora.models import ct2_folder

    spec = str(ct2_folder("bundled:tiny.en")) if backend == "ct2" else "bundled:tiny.en"
    from whisper_lora.audio import load_audio

    audio = [load_audio(say(RARE_WORDS))]

    def text(**options):
        opts = TranscribeOptions(backend=backend, temperatures=(0.0,), precision="fp32", **options)
        return Transcriber.from_spec(spec, opts).transcribe_arrays(audio)[0].text

    assert "Grafana" not in text()
    assert "Kubernetes" in text(initial_prompt=RARE_PROMPT) and "Grafana" in text(initial_prompt=RARE_PROMPT)
    assert "Grafana" in text(hotwords=RARE_PROMPT)


@pytest.mark.slow
@pytest.mark.parametrize("long_form", ["batched", "sequential"])
def test_words_in_long_files(bundled_tiny_en, say, long_form):
    """A 40-s file: every segment has its words, inside the segment, in time order."""
    from whisper_lora.audio import load_audio

    from .conftest import SENTENCES

    pause = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([part for s in SENTENCES * 2 for part in (load_audio(say(s)), pause)])
    assert len(audio) > 35 * 16000
    model, processor = bundled_tiny_en
    options = TranscribeOptions(word_timestamps=True, long_form=long_form, temperatures=(0.0,))
    result = Transcriber.from_model(model, processor, options).transcribe_array(audio)
    _check_words(result)
    for seg in result.segments:
        assert seg.start - 1e-6 <= seg.words[0].start and seg.words[-1].end <= seg.end + 1e-6
    assert "station" in result.text and "window" in result.text


@pytest.mark.slow
def test_align_heads_measures_and_saves_heads(english_clips, tmp_path):
    """align-heads on a training output folder: the tiny.en heads align clip starts within 0.3 s;
    the heads found are at least as good on the same clips, and --save writes them where the
    adapter's decoding reads them."""
    from .adapter_helpers import make_adapter
    from whisper_lora.decoding.align_heads import align_heads
    from whisper_lora.models import load_model

    adapter = make_adapter(tmp_path / "adapter", seed=2, scale=0.03)
    rows = [{"audio_path": str(p), "text": t} for p, t in english_clips] * 2
    manifest = tmp_path / "clips.json"
    manifest.write_text(json.dumps(rows))
    report = align_heads(str(adapter), manifest, top=4, save=True)
    assert report.n_clips >= 10 and report.set_error < 0.3
    assert report.found_error <= report.set_error + 0.02 and len(report.found) == 4
    model, _ = load_model(str(adapter))
    assert [tuple(h) for h in model.get_base_model().generation_config.alignment_heads] == report.found
    with pytest.raises(OptionsError, match="--save"):
        align_heads("bundled:tiny.en", manifest, save=True)
