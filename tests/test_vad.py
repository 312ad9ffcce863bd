"""--vad: Silero VAD (faster-whisper's bundled model) keeps Whisper to the speech.

The pieces of batched long audio and the time map of sequential long audio are checked on plain
numbers; the rest runs the real VAD model on espeak-ng speech and a minute of music and noise
between it, decoded by the real bundled tiny.en."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from whisper_lora.audio import SAMPLE_RATE, load_audio
from whisper_lora.decoding import vad
from whisper_lora.decoding.long_form import vad_pieces
from whisper_lora.decoding.results import Segment, Word
from whisper_lora.errors import OptionsError
from whisper_lora.transcribe import TranscribeOptions, Transcriber

from .conftest import SENTENCES

SR = SAMPLE_RATE
GAP_SECONDS = 60.0


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c == "'" else " " for c in text).split()


def music_and_noise(seconds: float, level_db: float = -30.0, seed: int = 0) -> np.ndarray:
    """Not speech, and not quiet: three-note chords that change every half second, mixed with
    white noise, at level_db RMS (dB full scale), far above the -50 dBFS silence_threshold_db,
    so the quiet check alone cannot skip it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    chords = np.zeros_like(t)
    step = SR // 2
    for start in range(0, len(t), step):
        part = slice(start, start + step)
        for f in rng.choice([220.0, 277.2, 329.6, 392.0, 440.0, 523.3], 3, replace=False):
            chords[part] += np.sin(2 * np.pi * f * t[part])
    mix = chords / np.sqrt(np.mean(chords ** 2)) + rng.normal(0.0, 1.0, len(t))
    return (mix / np.sqrt(np.mean(mix ** 2)) * 10 ** (level_db / 20)).astype(np.float32)


# ---- pieces of batched long audio, from the speech regions --------------------------------------

def s(seconds: float) -> int:
    return int(seconds * SR)


def test_regions_are_grouped_into_contiguous_pieces_of_at_most_30_seconds():
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.1, s(160)).astype(np.float32)
    audio[s(135):s(135.5)] = 0.0  # a pause inside the 40-s region, in the last 8 s before 30 s: cut there
    regions = [(0, s(5)), (s(6), s(10)), (s(20), s(28)), (s(29), s(35)), (s(100), s(104)), (s(110), s(150))]
    pieces = vad_pieces(audio, regions)
    # the first three fit 30 s together; the fourth would make 35 s; 65 s of nothing is skipped;
    # the 40-s region is cut at its pause, and nothing joins its last part
    assert pieces[:3] == [(0, s(28)), (s(29), s(35)), (s(100), s(104))]
    assert len(pieces) == 5 and pieces[3][0] == s(110) and pieces[4][1] == s(150)
    assert pieces[3][1] == pieces[4][0] and abs(pieces[3][1] - s(135.25)) < s(0.3)
    assert all(b - a <= s(30) for a, b in pieces)
    # the pieces hold every region and, in time order, do not overlap; the long gaps are left out
    covered = np.zeros(len(audio), dtype=bool)
    for a, b in pieces:
        covered[a:b] = True
    assert all(covered[a:b].all() for a, b in regions)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(pieces, pieces[1:]))
    assert not covered[s(35):s(100)].any() and not covered[s(104):s(110)].any() and not covered[s(150):].any()
    # a piece starts where a region starts and ends where one ends: no sound around it is added
    starts, ends = {a for a, _ in regions}, {b for _, b in regions}
    assert all(a in starts for a, _ in pieces[:4]) and all(b in ends for _, b in pieces[:3])


def test_no_regions_no_pieces():
    assert vad_pieces(np.zeros(s(40), dtype=np.float32), []) == []


# ---- the time map of sequential long audio -----------------------------------------------------

def test_time_map_puts_speech_only_times_back_on_the_file():
    # speech at 1-3 s, 10-12 s and 70-71 s of the file: 0-2, 2-4 and 4-5 s of the joined audio
    tm = vad.TimeMap(((s(1), s(3)), (s(10), s(12)), (s(70), s(71))))
    assert tm.original(0.5) == pytest.approx(1.5)
    assert tm.original(2.5) == pytest.approx(10.5)
    assert tm.original(4.5) == pytest.approx(70.5)
    # at a join: an end stays in the region before, a start goes to the region after
    assert tm.original(2.0, is_end=True) == pytest.approx(3.0)
    assert tm.original(2.0) == pytest.approx(10.0)
    # round trip for times inside the regions, and the way back lands at the joins
    for t in np.linspace(0.0, 4.99, 60):
        assert tm.original(tm.speech_time(tm.original(t))) == pytest.approx(tm.original(t), abs=1e-6)
        assert tm.speech_time(tm.original(t)) == pytest.approx(t, abs=1e-6)
    assert tm.speech_time(40.0) == pytest.approx(4.0)  # inside the removed 12-70 s: at the join


def test_time_map_moves_segments_and_their_words_and_clamps_them():
    tm = vad.TimeMap(((s(1), s(3)), (s(10), s(12))))
    seg = Segment(1.5, 3.0, "one two", (Word(1.5, 1.9, " one", 0.9), Word(2.1, 3.0, " two", 0.8)))
    late = Segment(3.5, 4.5, "three")  # the decoder's times can run past the audio
    moved = tm.segments([seg, late], duration=12.5)
    assert moved[0].start == pytest.approx(2.5) and moved[0].end == pytest.approx(11.0)
    assert [(w.start, w.end) for w in moved[0].words] == [pytest.approx((2.5, 2.9)), pytest.approx((10.1, 11.0))]
    assert moved[0].text == "one two" and moved[0].words[1].probability == 0.8
    assert moved[1].start == pytest.approx(11.5) and moved[1].end == pytest.approx(12.5)


def test_a_segment_that_just_crosses_a_join_is_put_on_one_side_of_the_removed_stretch():
    # 2 s at 1-3 s and 2 s at 70-72 s: 67 s of music removed at the join, 2.0 s of the joined audio
    tm = vad.TimeMap(((s(1), s(3)), (s(70), s(72))))
    # Whisper starts the next sentence in the pause, 0.4 s before the join: it starts at the join
    assert tm.span(1.6, 3.5) == pytest.approx((70.0, 71.5))
    # a sentence whose end runs 0.3 s into the next region ends at the join
    assert tm.span(0.2, 2.3) == pytest.approx((1.2, 3.0))
    # well across the join (1.5 s either side): speech on both sides, the span keeps both
    assert tm.span(0.5, 3.5) == pytest.approx((1.5, 71.5))
    # where nothing was removed (regions that touch), times move as they are
    touching = vad.TimeMap(((s(1), s(3)), (s(3), s(5))))
    assert touching.span(1.6, 3.5) == pytest.approx((2.6, 4.5))


def test_missing_faster_whisper_is_an_error_naming_the_flag(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper.vad", None)  # as if it were not installed
    with pytest.raises(OptionsError, match=r"--vad needs faster-whisper.*whisper-lora\[vad\]"):
        vad.speech_regions(np.zeros(SR, dtype=np.float32))


# ---- the real model on real speech -------------------------------------------------------------

@pytest.fixture(scope="module")
def gap_file(say):
    """Two sentences, 60 s of music and noise, two sentences: (audio, where the gap starts, where
    the speech resumes, the sentences)."""
    sentences = SENTENCES[:4]
    clips = [load_audio(say(t)) for t in sentences]
    pause = np.zeros(SR // 2, dtype=np.float32)
    before = np.concatenate([clips[0], pause, clips[1]])
    audio = np.concatenate([before, music_and_noise(GAP_SECONDS), clips[2], pause, clips[3]])
    gap_start = len(before) / SR
    return audio, gap_start, gap_start + GAP_SECONDS, sentences


@pytest.fixture(scope="module")
def tiny_en_vad(bundled_tiny_en):
    model, processor = bundled_tiny_en
    return Transcriber.from_model(model, processor, TranscribeOptions(vad=True), model_name="bundled:tiny.en")


def check_gap(segments, gap_start: float, resume: float) -> None:
    """No segment inside the gap (1 s of slack at its ends), and the speech after it starts
    within about a second of where it resumes."""
    inside = [seg for seg in segments if seg.end > gap_start + 1.0 and seg.start < resume - 1.0]
    assert not inside, f"text in the music: {inside}"
    after = [seg for seg in segments if seg.end > resume]
    assert after and abs(after[0].start - resume) <= 1.0, (resume, after)


def check_words(text: str) -> None:
    said = set(words(text))
    for anchors in (("lazy", "quick"), ("call", "back"), ("nice", "today"), ("coffee", "like")):
        assert said & set(anchors), f"{anchors} missing from {text!r}"


@pytest.mark.slow
def test_regions_of_the_real_model_skip_the_music(gap_file):
    audio, gap_start, resume, _ = gap_file
    regions = vad.speech_regions(audio)
    assert regions and all(b <= gap_start * SR + s(1) or a >= resume * SR - s(1) for a, b in regions), regions
    assert any(abs(a / SR - resume) <= 0.6 for a, _ in regions)  # 0.4 s of padding before the speech
    assert not vad.has_speech(music_and_noise(10.0)) and not vad.has_speech(np.zeros(SR, np.float32))


@pytest.mark.slow
def test_batched_long_file_decodes_no_text_in_a_minute_of_music(tiny_en_vad, gap_file):
    """Without --vad, tiny.en here writes "you" over 6-23 s of the music and starts the speech
    after it at 48 s instead of 66.6 s."""
    audio, gap_start, resume, _ = gap_file
    result = tiny_en_vad.transcribe_array(audio)
    check_gap(result.segments, gap_start, resume)
    check_words(result.text)
    starts = [seg.start for seg in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= result.duration


@pytest.mark.slow
def test_sequential_long_file_decodes_the_speech_only_on_the_file_timeline(bundled_tiny_en, gap_file):
    """--long_form sequential --vad: the speech joined, decoded by transformers' sequential long
    form, and put back (without --vad tiny.en starts the speech after the music at 60.0 s); a
    file with no speech is not decoded."""
    audio, gap_start, resume, _ = gap_file
    model, processor = bundled_tiny_en
    t = Transcriber.from_model(model, processor, TranscribeOptions(vad=True, long_form="sequential"))
    silent = np.zeros(40 * SR, dtype=np.float32)
    decoded = t.backend.decode_long([audio, silent])
    assert decoded[1].segments == [] and decoded[1].language == "en"
    check_gap(decoded[0].segments, gap_start, resume)
    check_words(" ".join(seg.text for seg in decoded[0].segments))
    assert all(0 <= seg.start <= seg.end <= len(audio) / SR for seg in decoded[0].segments)


@pytest.mark.slow
@pytest.mark.parametrize("long_form", ["batched", "sequential"])
def test_ct2_backend_with_vad_keeps_the_music_out(gap_file, long_form):
    """The ct2 backend plans --vad with vad.py too: faster-whisper's own VAD mapping put segments
    that cross a join over the whole minute left out (benchmarks/vad_check.py)."""
    from whisper_lora.models import ct2_folder

    audio, gap_start, resume, _ = gap_file
    options = TranscribeOptions(vad=True, backend="ct2", long_form=long_form, return_timestamps=True)
    result = Transcriber.from_spec(str(ct2_folder("bundled:tiny.en")), options).transcribe_array(audio)
    check_gap(result.segments, gap_start, resume)
    check_words(result.text)


@pytest.mark.slow
def test_short_file_without_speech_is_not_decoded(tiny_en_vad, say):
    backend = tiny_en_vad.backend
    calls = []

    def counted(audios, **kwargs):
        calls.append(len(audios))
        return backend.decode_batch(audios, **kwargs)

    from whisper_lora.decoding.packing import decode_short

    music = music_and_noise(10.0, seed=3)
    speech = load_audio(say(SENTENCES[2]))
    with_vad = decode_short([music, speech], counted, tiny_en_vad.options, packing=False)
    assert with_vad[0].segments == [] and calls == [1]  # the speech alone was decoded
    calls.clear()
    plain = decode_short([music, speech], counted, TranscribeOptions(language="en"), packing=False)
    assert calls == [2]  # without --vad the music is decoded too
    assert with_vad[1].segments == plain[1].segments and {"nice", "today"} <= set(words(plain[1].segments[0].text))
    assert tiny_en_vad.transcribe_array(music).text == ""
