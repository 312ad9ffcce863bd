"""Transcription: options, order, errors, long audio, silence, outputs, both entry points, both backends.

The mechanics run on the tiny random model (its text is gibberish, so only structure is checked);
the content checks run on the real bundled tiny.en (and base for language detection)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from whisper_lora.audio import SAMPLE_RATE, load_audio
from whisper_lora.errors import OptionsError
from whisper_lora.transcribe import (
    TranscribeOptions, Transcriber, choose_backend, read_audio_list, transcribe)

from .conftest import SENTENCES

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(temperatures=(0.0,))  # no sampling retries: random weights would trigger them all


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c == "'" else " " for c in text).split()


def write_wav(path, samples) -> Path:
    soundfile.write(path, np.asarray(samples, dtype=np.float32), SAMPLE_RATE)
    return Path(path)


def joined(paths, gap_seconds: float, path) -> Path:
    gap = np.zeros(int(gap_seconds * SAMPLE_RATE), dtype=np.float32)
    parts = []
    for p in paths:
        parts += [load_audio(p), gap]
    return write_wav(path, np.concatenate(parts))


# ---- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(task="summarize"), "--task"),
    (dict(language="klingon"), "--language 'klingon'"),
    (dict(batch_size=0), "--batch_size"),
    (dict(beam_size=0), "--beam_size"),
    (dict(backend="onnx"), "--backend"),
    (dict(device="tpu"), "--device"),
    (dict(temperatures=()), "temperatures"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(long_form="parallel"), "--long_form 'parallel'"),
])
def test_bad_options_are_rejected_up_front(kwargs, message):
    with pytest.raises(OptionsError, match=message):
        TranscribeOptions(**kwargs)


@pytest.mark.parametrize("given, code", [("zh", "zh"), ("Chinese", "zh"), ("mandarin", "zh"), ("<|en|>", "en"),
                                         (None, None)])
def test_language_names_become_codes(given, code):
    assert TranscribeOptions(language=given).language == code


def test_english_only_model_refuses_translation_and_other_languages():
    with pytest.raises(OptionsError, match="English-only"):
        TranscribeOptions(task="translate").check_for_model(multilingual=False)
    with pytest.raises(OptionsError, match="--language zh"):
        TranscribeOptions(language="zh").check_for_model(multilingual=False)
    assert TranscribeOptions().check_for_model(multilingual=False).language == "en"
    assert TranscribeOptions().check_for_model(multilingual=True).language is None


def test_fp16_on_cpu_falls_back_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert TranscribeOptions(precision="fp16").resolved_precision("cpu") in ("fp32", "bf16")
    assert "--fp16 on CPU" in caplog.text
    assert TranscribeOptions(precision="fp32").resolved_precision("cpu") == "fp32"


def test_audio_list_resolves_relative_paths_and_skips_comments(tmp_path):
    (tmp_path / "sub").mkdir()
    lst = tmp_path / "sub" / "list.txt"
    lst.write_text("# my files\na.wav\n\n  /abs/b.wav  \n../c.mp3\n", encoding="utf-8")
    assert read_audio_list(lst) == [str(tmp_path / "sub" / "a.wav"), "/abs/b.wav",
                                    str(tmp_path / "sub" / ".." / "c.mp3")]
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(OptionsError, match="no audio paths"):
        read_audio_list(tmp_path / "empty.txt")
    with pytest.raises(OptionsError, match="not found"):
        read_audio_list(tmp_path / "nope.txt")


def test_backend_choice(tmp_path):
    assert choose_backend("bundled:tiny.en", "auto") == "hf"
    (tmp_path / "model.bin").write_bytes(b"x")
    assert choose_backend(str(tmp_path), "auto") == "ct2"
    assert choose_backend(str(tmp_path), "hf") == "hf"


# ---- mechanics on the tiny random model ---------------------------------------------------------

def short_winded(pair, max_length: int = 24):
    """A copy of a random model that stops after a few tokens: random weights rarely say <|endoftext|>,
    and 448 tokens per file would make every test slow for nothing."""
    import copy

    model, processor = pair
    model = copy.deepcopy(model)
    model.generation_config.max_length = max_length
    return model, processor


@pytest.fixture(scope="module")
def random_pair(tiny_random):
    return short_winded(tiny_random)


@pytest.fixture(scope="module")
def random_transcriber(random_pair):
    model, processor = random_pair
    return Transcriber.from_model(model, processor, TranscribeOptions(batch_size=2, **FAST), model_name="tiny-random")


def test_results_come_back_in_input_order_with_errors_in_place(random_transcriber, english_clips, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(64)))
    paths = [str(english_clips[0][0]), str(tmp_path / "missing.wav"), str(english_clips[3][0]),
             str(corrupt), str(english_clips[1][0]), str(english_clips[5][0])]
    results = list(random_transcriber.transcribe_files(paths))
    assert [r.path for r in results] == paths
    assert [r.ok for r in results] == [True, False, True, False, True, True]
    assert "not found" in results[1].error and "corrupt.wav" in results[3].error
    for r, p in zip(results, paths):
        if r.ok:
            assert r.duration == pytest.approx(len(load_audio(p)) / SAMPLE_RATE)
            assert r.language == "en" and r.language_probability is None


def test_batching_does_not_change_the_text(random_pair, english_clips):
    model, processor = random_pair
    paths = [str(p) for p, _ in english_clips[:3]]
    one = [r.text for r in Transcriber.from_model(model, processor, TranscribeOptions(batch_size=1, **FAST))
           .transcribe_files(paths)]
    three = [r.text for r in Transcriber.from_model(model, processor, TranscribeOptions(batch_size=3, **FAST))
             .transcribe_files(paths)]
    assert one == three


def test_max_new_tokens_caps_each_decoding(random_pair, english_clips):
    """Random weights never say <|endoftext|>: without the cap they would run to 448 tokens."""
    model, processor = random_pair
    paths = [str(p) for p, _ in english_clips[:2]]

    def lengths(cap):
        opts = TranscribeOptions(max_new_tokens=cap, **FAST)
        texts = [r.text for r in Transcriber.from_model(model, processor, opts).transcribe_files(paths)]
        return [len(processor.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]

    assert all(n <= 3 + 2 for n in lengths(3))  # re-tokenizing decoded text may split a token or two
    assert all(n > 10 for n in lengths(30))


def test_long_array_gives_ordered_segments_within_its_duration(random_transcriber, english_clips):
    audio = np.concatenate([load_audio(p) for p, _ in english_clips] * 3)  # ~48 s
    result = random_transcriber.transcribe_array(audio)
    assert result.duration == pytest.approx(len(audio) / SAMPLE_RATE)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert all(0 <= s.start <= s.end <= result.duration for s in result.segments)


def test_long_files_are_cut_into_pieces_decoded_in_batches(random_pair, english_clips, monkeypatch):
    """Pieces of both files share batches; each file gets its own ordered segments back."""
    from whisper_lora.decoding.long_form import cut_at_pauses
    from whisper_lora.decoding.hf import HFBackend

    clips = [load_audio(p) for p, _ in english_clips]
    long70 = np.concatenate(clips * 5)[:70 * SAMPLE_RATE]
    long40 = np.concatenate(clips * 3)[:40 * SAMPLE_RATE]
    assert len(cut_at_pauses(long70)) >= 3
    model, processor = random_pair
    backend = Transcriber.from_model(model, processor, TranscribeOptions(batch_size=2, **FAST)).backend
    batches = []
    real = HFBackend.decode_batch

    def recording(self, audios, *args, **kwargs):  # the real decoding, with the batch sizes noted
        batches.append(len(audios))
        return real(self, audios, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "decode_batch", recording)
    together = backend.decode_long([long70, long40])
    assert len(together) == 2
    assert sum(batches) == len(cut_at_pauses(long70)) + len(cut_at_pauses(long40)) and max(batches) == 2
    for dec, audio in zip(together, [long70, long40]):
        duration = len(audio) / SAMPLE_RATE
        starts = [s.start for s in dec.segments]
        assert dec.segments and starts == sorted(starts) and dec.language == "en"
        assert all(0 <= s.start <= s.end <= duration for s in dec.segments)
    # a file's segments are its own: the same as when it is decoded alone
    assert backend.decode_long([long40])[0].segments == together[1].segments


def test_long_file_on_a_multilingual_model_has_one_detected_language(tiny_random_multilingual, english_clips):
    model, processor = short_winded(tiny_random_multilingual)
    t = Transcriber.from_model(model, processor, TranscribeOptions(**FAST))
    result = t.transcribe_array(np.concatenate([load_audio(p) for p, _ in english_clips] * 3))
    assert result.duration > 30 and len(result.language) == 2 and 0 < result.language_probability <= 1


def test_empty_array_is_an_error(random_transcriber):
    from whisper_lora.errors import AudioError

    with pytest.raises(AudioError):
        random_transcriber.transcribe_array(np.zeros(0, dtype=np.float32))


def test_detection_on_a_multilingual_model_reports_a_probability(tiny_random_multilingual, english_clips):
    model, processor = short_winded(tiny_random_multilingual)
    t = Transcriber.from_model(model, processor, TranscribeOptions(**FAST))
    result = t.transcribe_array(load_audio(english_clips[0][0]))
    assert len(result.language) == 2 and 0 < result.language_probability <= 1
    given = Transcriber.from_model(model, processor, TranscribeOptions(language="fr", **FAST))
    result = given.transcribe_array(load_audio(english_clips[0][0]))
    assert result.language == "fr" and result.language_probability is None


def test_adapter_changes_the_output(tmp_path, random_pair, english_clips):
    """A training output folder (base + adapter) decodes differently from its base."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, processor = random_pair
    base = tmp_path / "base"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    peft_model = get_peft_model(model.__class__.from_pretrained(base),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    adapter = tmp_path / "output"
    peft_model.save_pretrained(adapter)
    processor.save_pretrained(adapter)
    (adapter / "training_config.json").write_text(json.dumps({"base_model": str(base)}))
    paths = [str(p) for p, _ in english_clips[:2]]
    plain = [r.text for r in Transcriber.from_spec(str(base), TranscribeOptions(**FAST)).transcribe_files(paths)]
    tuned = [r.text for r in Transcriber.from_spec(str(adapter), TranscribeOptions(**FAST)).transcribe_files(paths)]
    merged = [r.text for r in Transcriber.from_spec(str(adapter), TranscribeOptions(merge=True, **FAST))
              .transcribe_files(paths)]
    assert tuned != plain
    assert merged == tuned


def test_run_writes_json_with_error_entries_and_fails(tmp_path, english_clips, random_pair, monkeypatch):
    """transcribe(): a list with 2 bad files gives N-2 results, 2 error entries, a failing summary."""
    from whisper_lora import transcribe as module

    model, processor = random_pair
    monkeypatch.setattr(module.Transcriber, "from_spec", classmethod(
        lambda cls, spec, options=None: cls.from_model(model, processor, options, model_name=spec)))
    (tmp_path / "bad.wav").write_text("not audio")
    paths = [str(p) for p, _ in english_clips[:3]] + [str(tmp_path / "gone.wav"), str(tmp_path / "bad.wav")]
    out = tmp_path / "results.json"
    summary = transcribe("tiny-random", paths, TranscribeOptions(**FAST), output_file=out, progress=False)
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["model"] == "tiny-random" and doc["backend"] == "hf"
    assert [r["path"] for r in doc["results"]] == paths
    assert [r["error"] is None for r in doc["results"]] == [True, True, True, False, False]
    assert len(summary.failed) == 2 and "2 failed" in summary.describe()
    srt = tmp_path / "one.srt"
    transcribe("tiny-random", paths[:1], TranscribeOptions(**FAST), output_file=srt, progress=False)
    first = srt.read_text().split("\n")
    assert first[0] == "1" and first[1].startswith("00:00:0") and " --> 00:00:0" in first[1]


# ---- the real tiny.en and base ------------------------------------------------------------------

def run_script(args, capsys):
    sys.path.insert(0, str(ROOT))
    try:
        import whisper_lora_inference
    finally:
        sys.path.pop(0)
    code = whisper_lora_inference.main(args)
    return code, capsys.readouterr()


@pytest.mark.slow
def test_original_single_file_command(tmp_path, say, capsys, monkeypatch):
    """python whisper_lora_inference.py --model_path M --audio_path audio/test.wav --language en --return_timestamps"""
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "test.wav").write_bytes(say(SENTENCES[1]).read_bytes())
    monkeypatch.chdir(tmp_path)
    code, out = run_script(["--model_path", "bundled:tiny.en", "--audio_path", "audio/test.wav", "--language", "en",
                            "--return_timestamps"], capsys)
    assert code == 0, out.err
    line = out.out.strip()
    assert line.startswith("[00:00.000 --> 00:0")
    assert {"call", "back", "home", "tonight"} <= set(words(line))


@pytest.mark.slow
def test_original_list_command_with_two_bad_files(tmp_path, english_clips, capsys, monkeypatch):
    (tmp_path / "audio").mkdir()
    names = []
    for i, (path, _) in enumerate(english_clips[:3]):
        (tmp_path / "audio" / f"file{i}.wav").write_bytes(Path(path).read_bytes())
        names.append(f"audio/file{i}.wav")
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path / "audio_list.txt").write_text("\n".join(names[:2] + ["audio/missing.wav", "audio/broken.wav",
                                                                    names[2]]) + "\n")
    monkeypatch.chdir(tmp_path)
    code, out = run_script(["--model_path", "bundled:tiny.en", "--audio_list", "audio_list.txt",
                            "--output_file", "results.json"], capsys)
    assert code == 1  # some files failed
    assert "3 of 5 files" in out.err and "2 failed" in out.err and "missing.wav" in out.err
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [Path(r["path"]).name for r in results] == ["file0.wav", "file1.wav", "missing.wav", "broken.wav",
                                                       "file2.wav"]
    good = [r for r in results if r["error"] is None]
    assert len(good) == 3
    for r, (_, text) in zip(good, english_clips[:3]):
        assert len(set(words(r["text"])) & set(words(text))) >= len(words(text)) // 2, r["text"]
        assert r["language"] == "en" and r["segments"] and r["duration"] > 1


@pytest.fixture(scope="module")
def tiny_en(bundled_tiny_en):
    model, processor = bundled_tiny_en
    return Transcriber.from_model(model, processor, TranscribeOptions(), model_name="bundled:tiny.en")


@pytest.mark.slow
def test_thirty_seconds_of_silence_gives_no_text(tiny_en, tmp_path):
    result = tiny_en.transcribe_array(np.zeros(30 * SAMPLE_RATE, dtype=np.float32))
    assert result.text == "" and result.segments == []
    quiet = np.random.default_rng(0).normal(0, 1e-3, 45 * SAMPLE_RATE).astype(np.float32)  # faint hiss, long form
    assert tiny_en.transcribe_array(quiet).text == ""


@pytest.mark.slow
def test_long_file_keeps_every_sentence_in_order(tiny_en, bundled_tiny_en, say, tmp_path):
    """Batched pieces (the default) and sequential windows both keep every sentence, in order,
    and batched gets about as many words right."""
    from whisper_lora.scoring.metrics import error_rates

    sentences = SENTENCES * 2  # 12 sentences with pauses: ~45 s, two windows and a border
    path = joined([say(s) for s in sentences], 1.2, tmp_path / "long.wav")
    result = next(tiny_en.transcribe_files([str(path)]))
    model, processor = bundled_tiny_en
    sequential = next(Transcriber.from_model(model, processor, TranscribeOptions(long_form="sequential"))
                      .transcribe_files([str(path)]))
    # The sentences repeat, so the sequential prompt (the previous window's text) holds the right
    # words for the second half, which batched pieces never see: measured 21% against 16%.
    reference = [" ".join(sentences)]
    batched_wer = error_rates(reference, [result.text], "en").wer
    sequential_wer = error_rates(reference, [sequential.text], "en").wer
    assert batched_wer <= sequential_wer + 0.1, (result.text, sequential.text)
    # every sentence shows up, in order: one of its two most distinctive words (tiny.en hears the
    # second "The weather is very nice today" as "But when there is very nice today" without a prompt)
    anchors = [("quick", "lazy"), ("call", "back"), ("weather", "nice"), ("coffee", "like"),
               ("station", "meet"), ("window", "fresh")] * 2
    for r in (result, sequential):
        assert r.duration > 40
        hyp = words(r.text)
        position = -1
        for pair in anchors:
            later = [i for i, w in enumerate(hyp) if any(w.startswith(a[:4]) for a in pair) and i > position]
            assert later, f"{pair} missing after position {position} in {r.text!r}"
            position = later[0]
        starts = [s.start for s in r.segments]
        assert starts == sorted(starts) and all(s.start <= s.end for s in r.segments)
        assert r.segments[-1].end == pytest.approx(r.duration, abs=3.0)


@pytest.mark.slow
def test_sentence_left_after_a_long_audio_piece_is_decoded_again(tiny_en, say):
    """Whisper often ends a piece of long audio before its last sentence; the tail after the last
    segment is found (unless it is quiet, too short, or nothing was decoded) and decoded."""
    from whisper_lora.decoding.long_form import decode_tails, undecoded_tail
    from whisper_lora.decoding.results import Segment

    first, second = load_audio(say(SENTENCES[0])), load_audio(say(SENTENCES[2]))
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    piece = np.concatenate([first, pause, second, pause])
    backend, options = tiny_en.backend, tiny_en.options
    first_end = (len(first) + SAMPLE_RATE // 2) / SAMPLE_RATE  # the first sentence, then half the pause
    rest = undecoded_tail(piece, [Segment(0.0, first_end, "the first sentence")], options)
    assert rest == round(first_end * SAMPLE_RATE)
    (tail,) = decode_tails([piece[rest:]], "en", backend.decode_batch, options)
    assert {"very", "nice", "today"} <= set(words(" ".join(s.text for s in tail.segments))), tail.segments
    assert all(0 <= s.start <= s.end <= (len(piece) - rest) / SAMPLE_RATE + 0.01 for s in tail.segments)
    # nothing to do: everything decoded, a quiet or too short tail, no segment at all
    assert undecoded_tail(piece, [Segment(0.0, len(piece) / SAMPLE_RATE - 0.5, "all")], options) is None
    silent_tail = np.concatenate([first, np.zeros(5 * SAMPLE_RATE, dtype=np.float32)])
    assert undecoded_tail(silent_tail, [Segment(0.0, len(first) / SAMPLE_RATE, "x")], options) is None
    assert undecoded_tail(piece, [], options) is None


@pytest.mark.slow
def test_ct2_backend_gives_the_same_words(say, tmp_path):
    paths = [str(say(s)) for s in SENTENCES[:3]]
    options = TranscribeOptions(backend="ct2", batch_size=3, return_timestamps=True)
    ct2 = Transcriber.from_spec("bundled:tiny.en", options)
    assert ct2.backend.name == "ct2"
    results = list(ct2.transcribe_files(paths))
    for r, text in zip(results, SENTENCES):
        assert len(set(words(r.text)) & set(words(text))) >= len(words(text)) // 2, r.text
        assert r.segments and r.segments[0].end <= r.duration
    long = ct2.transcribe_array(np.concatenate([load_audio(p) for p in paths * 4]))
    assert long.duration > 30 and "lazy" in words(long.text)


@pytest.mark.slow
def test_bundled_base_detects_languages_like_faster_whisper(say):
    """English is found as en; espeak-ng's Mandarin is not found as zh by base (it hears th or en,
    and faster-whisper's own detection agrees), so the check is against that reference."""
    from faster_whisper import WhisperModel

    from whisper_lora.models import ct2_folder

    en_path, zh_path = say(SENTENCES[0]), say("今天天气很好，我们去公园散步吧。", voice="cmn")
    # fp32 pinned: the probabilities are compared with faster-whisper's float32 ones
    t = Transcriber.from_spec("bundled:base", TranscribeOptions(batch_size=2, precision="fp32", **FAST))
    en, zh = t.transcribe_files([str(en_path), str(zh_path)])
    assert en.language == "en" and en.language_probability > 0.5 and "lazy" in words(en.text)
    reference = WhisperModel(str(ct2_folder("bundled:base")), device="cpu", compute_type="float32")
    code, probability, _ = reference.detect_language(load_audio(zh_path))
    assert zh.language == code and zh.language_probability == pytest.approx(probability, abs=0.05)
    forced_options = TranscribeOptions(language="zh", precision="fp32", **FAST)
    forced = Transcriber.from_spec("bundled:base", forced_options).transcribe_array(load_audio(zh_path))
    assert forced.language == "zh" and forced.language_probability is None
    assert any("\u4e00" <= c <= "\u9fff" for c in forced.text), forced.text


# ---- cutting long audio into pieces ----------------------------------------------------------------

def test_long_audio_is_cut_in_a_pause_into_pieces_of_at_most_30_seconds():
    from whisper_lora.decoding.long_form import cut_at_pauses

    rng = np.random.default_rng(0)
    bursts = rng.normal(0, 0.1, 95 * SAMPLE_RATE) * (1 + np.sin(np.arange(95 * SAMPLE_RATE) / 800))  # ~syllables
    gap = (int(25.75 * SAMPLE_RATE), int(26.25 * SAMPLE_RATE))
    bursts[gap[0]:gap[1]] = 0.0
    pieces = cut_at_pauses(bursts.astype(np.float32))
    assert pieces[0][0] == 0 and pieces[-1][1] == len(bursts)
    assert all(a < b == c for (a, b), (c, _) in zip(pieces, pieces[1:]))  # no gaps, no overlaps
    assert all(b - a <= 30 * SAMPLE_RATE for a, b in pieces) and len(pieces) >= 4
    assert gap[0] < pieces[0][1] < gap[1]  # the first cut is in the silence, not at 30 s
    assert cut_at_pauses(np.ones(30 * SAMPLE_RATE)) == [(0, 30 * SAMPLE_RATE)]


# ---- packing short clips into shared windows ------------------------------------------------------

def test_packing_is_the_default_and_no_pack_turns_it_off():
    from whisper_lora.cli import build_parser
    from whisper_lora.cli.transcribe import add_arguments

    parse = build_parser().parse_args
    assert TranscribeOptions().pack and TranscribeOptions().batch_size == 16
    assert parse(["transcribe", "--model", "m", "a.wav"]).pack is True
    assert parse(["transcribe", "--model", "m", "--no_pack", "a.wav"]).pack is False
    assert parse(["transcribe", "--model", "m", "--pack", "a.wav"]).pack is True  # older commands still parse
    assert parse(["evaluate", "--model", "m", "--data", "d.json", "--no_pack"]).pack is False
    # the README's inference script keeps exactly the README's flags (and packs, as the default)
    script = argparse.ArgumentParser()
    add_arguments(script, extended=False)
    with pytest.raises(SystemExit):
        script.parse_args(["--model_path", "m", "--no_pack"])


def test_packing_plan_fills_windows_and_leaves_long_clips_alone():
    from whisper_lora.decoding import packing

    durations = [3.0, 12.0, 2.0, 8.0, 3.0, 29.0, 4.0]
    windows, alone = packing.plan(durations)
    assert alone == [1, 5]  # over MAX_CLIP_SECONDS
    packed = sorted(i for w in windows for i in w.clips)
    assert packed == [0, 2, 3, 4, 6]
    for w in windows:
        assert w.end <= packing.WINDOW_SECONDS
        for (a, da), b in zip(zip(w.offsets, w.durations), w.offsets[1:]):
            assert b == pytest.approx(a + da + packing.GAP_SECONDS)
    assert packing.plan([3.0])[1] == [0]  # a window of one is no window


def test_packing_split_hands_segments_back_and_flags_doubt():
    from whisper_lora.decoding import packing
    from whisper_lora.decoding.results import Segment

    w = packing.Window(clips=[7, 3, 5], offsets=[0.0, 4.5, 9.0], durations=[3.0, 3.0, 3.0])
    given, doubt = packing.split(w, [Segment(0.0, 2.9, "one"), Segment(4.6, 7.0, "two"),
                                     Segment(7.0, 7.7, "tail of two"), Segment(9.1, 12.0, "three")])
    assert doubt is None
    assert given[7] == [Segment(0.0, 2.9, "one")]
    assert [s.text for s in given[3]] == ["two", "tail of two"]
    assert given[3][0].start == pytest.approx(0.1) and given[3][1].end == pytest.approx(3.0)
    # A window is trusted whole or not at all: each of these puts every clip in doubt.
    in_doubt = {
        "passed over": [Segment(0.0, 2.9, "one"), Segment(9.1, 12.0, "three")],
        "nothing heard": [],
        "mostly in a pause": [Segment(0.0, 2.9, "one"), Segment(4.6, 7.0, "two"), Segment(7.2, 8.4, "tail"),
                              Segment(9.1, 12.0, "three")],
        "times lag the words": [Segment(0.0, 1.4, "one"), Segment(1.5, 2.9, "two"), Segment(4.6, 7.4, "three")],
        "across": [Segment(0.0, 6.0, "one two"), Segment(9.0, 11.0, "three")],
        "in the silence": [Segment(0.0, 2.9, "one"), Segment(3.1, 4.4, "two"), Segment(4.6, 7.4, "two"),
                           Segment(9.1, 12.0, "three")],
        "out of order": [Segment(0.0, 2.9, "one"), Segment(9.1, 12.0, "three"), Segment(4.6, 7.4, "two")],
        "same words": [Segment(0.0, 2.9, "she opened the window"), Segment(4.6, 7.4, "two"),
                       Segment(9.1, 12.0, "She opened the window to let in some air.")],
    }
    for case, segments in in_doubt.items():
        assert packing.split(w, segments)[1] is not None, case
    # Whisper ending the window early leaves the last clips unheard, not misheard: no doubt
    given, doubt = packing.split(w, [Segment(0.0, 2.9, "one"), Segment(4.6, 7.4, "two")])
    assert doubt is None and given[5] == [] and [s.text for s in given[3]] == ["two"]
    # a zero-length segment at a clip's end is the clip's; a short word shared is no doubt
    given, doubt = packing.split(w, [Segment(0.0, 2.9, "the one"), Segment(3.0, 3.0, "on"),
                                     Segment(4.6, 7.4, "the two"), Segment(9.1, 12.0, "the three")])
    assert doubt is None and [s.text for s in given[7]] == ["the one", "on"]


def test_clips_in_doubt_are_packed_again_before_any_decodes_alone():
    """The scheduling of decode_packed, with a scripted decoder that reads which clip is where
    from the window audio (clip k is filled with the value k + 1) and says one segment per clip,
    except where it is told to run two clips together or to miss one."""
    from whisper_lora.decoding import packing
    from whisper_lora.decoding.results import Decoded, Segment

    seconds = [3.0, 3.0, 3.0, 3.0, 3.0, 12.0, 3.0]
    audios = [np.full(int(s * SAMPLE_RATE), (k + 1.0) / 10, dtype=np.float32) for k, s in enumerate(seconds)]
    audios[6][:] = 0.0  # silence: never decoded
    merge_first_pass = {1, 2}  # Whisper runs clips 1 and 2 into one segment the first time
    missed_first_pass = 3  # and hears nothing of clip 3
    calls = []

    def decode_batch(batch, timestamps=False, retry=True):
        calls.append((timestamps, []))
        out = []
        for audio in batch:
            runs = []  # (clip, start s, end s) of each clip's samples in the window
            for value in np.unique(audio[audio > 0]):
                where = np.flatnonzero(audio == value)
                runs.append((int(round(value * 10)) - 1, where[0] / SAMPLE_RATE, (where[-1] + 1) / SAMPLE_RATE))
            runs.sort(key=lambda r: r[1])
            calls[-1][1].append(sorted(k for k, _, _ in runs))
            segs = [Segment(a, b, f"clip{k}") for k, a, b in runs]
            if len(calls) == 1 and {k for k, _, _ in runs} >= merge_first_pass:
                both = [s for s, (k, _, _) in zip(segs, runs) if k in merge_first_pass]
                segs = [s for s in segs if s not in both and s.text != f"clip{missed_first_pass}"]
                segs = sorted(segs + [Segment(both[0].start, both[1].end, "clip1 clip2")], key=lambda s: s.start)
            out.append(Decoded(segs if timestamps else segs[:1], "en", None))
        return out, [False] * len(batch)

    options = TranscribeOptions(batch_size=16)
    results = packing.decode_short(audios, decode_batch, options, packing=True)
    assert [" ".join(s.text for s in r.segments) for r in results] == \
        ["clip0", "clip1", "clip2", "clip3", "clip4", "clip5", ""]
    first, again, alone = calls
    assert first[0] and again[0] and not alone[0]
    assert first[1] == [[0, 1, 2, 3, 4]]
    # the whole window was in doubt: its clips that heard something are packed again, wider apart
    assert again[1] == [[0, 1, 2, 4]]
    # the clip that got no text, and the long clip, decode alone; the silent clip not at all
    assert alone[1] == [[3], [5]]


def test_window_audio_places_each_clip_at_its_offset():
    from whisper_lora.decoding import packing

    clips = [np.ones(16000, dtype=np.float32), np.full(8000, 2.0, dtype=np.float32)]
    w = packing.Window(clips=[1, 0], offsets=[0.0, 2.0], durations=[0.5, 1.0])
    audio = packing.window_audio(w, clips)
    assert audio[:8000].tolist() == [2.0] * 8000 and not audio[8000:32000].any()
    assert audio[32000:48000].tolist() == [1.0] * 16000


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_packed_decoding_keeps_each_file_to_itself(bundled_tiny_en, english_clips, tmp_path, precision):
    """Each file's packed transcript matches its own transcript decoded alone, not a neighbour's.
    In bf16 (issue 14) tiny.en's times in the packed window went wrong and "I would like a cup of
    coffee." came back as "She opened the window to let in some fresh air."."""
    model, processor = bundled_tiny_en
    silent = write_wav(tmp_path / "silent.wav", np.zeros(4 * SAMPLE_RATE))
    paths = [str(p) for p, _ in english_clips] + [str(silent)]

    def run(pack):
        options = TranscribeOptions(pack=pack, return_timestamps=True, precision=precision, **FAST)
        return list(Transcriber.from_model(model, processor, options).transcribe_files(paths))

    alone, packed = run(False), run(True)
    assert [r.path for r in packed] == paths
    assert packed[-1].text == ""
    for i, r in enumerate(packed[:-1]):
        own = set(words(alone[i].text))
        assert len(set(words(r.text)) & own) >= len(own) * 2 // 3, (r.text, alone[i].text)
        others = set().union(*(words(a.text) for j, a in enumerate(alone[:-1]) if j != i)) - own
        assert not set(words(r.text)) & others - {"the", "a", "at", "to", "in", "of"}, (r.text, alone[i].text)
        assert all(0 <= s.start <= s.end <= r.duration for s in r.segments)


# ---- the int8 output head on a CPU ----------------------------------------------------------------

@pytest.mark.slow
def test_int8_head_decodes_as_fp32_does_and_leaves_the_model_alone(bundled_tiny_en, english_clips):
    from whisper_lora.decoding.int8_head import Int8Head
    from whisper_lora.scoring.metrics import error_rates
    model, processor = bundled_tiny_en
    head = model.proj_out
    paths = [str(p) for p, _ in english_clips]

    def run(precision):
        t = Transcriber.from_model(model, processor, TranscribeOptions(precision=precision, **FAST))
        return t, [r.text for r in t.transcribe_files(paths)]

    t, quantized = run("auto")
    _, exact = run("fp32")
    assert isinstance(t.backend._head, Int8Head)  # built: this torch has the kernel
    # the model is as it was: its own fp32 head, still tied to the token embeddings
    assert model.proj_out is head and head.weight is model.model.decoder.embed_tokens.weight
    assert error_rates(exact, quantized, "en").wer <= 0.05, (exact, quantized)
    refs = [text for _, text in english_clips]
    assert error_rates(refs, quantized, "en").wer <= error_rates(refs, exact, "en").wer + 0.05

    # on states of a decoder's scale (token embeddings through its final layer norm), the int8
    # head picks the token the fp32 head picks
    with torch.no_grad():
        states = model.model.decoder.layer_norm(model.model.decoder.embed_tokens.weight[:64])
        assert (t.backend._head(states).argmax(-1) == head(states).argmax(-1)).float().mean() >= 0.95

    # decoding inside decoding (a retry within a batch) still ends with the model's own head
    with t.backend._decoding():
        with t.backend._decoding():
            assert model.proj_out is t.backend._head and t.backend._fp32_head is head
    assert model.proj_out is head

    # weights changed in place (training goes on) -> the int8 copy is made again
    first = t.backend._int8_head()
    assert t.backend._int8_head() is first
    with torch.no_grad():
        head.weight.mul_(1.0)
    assert t.backend._int8_head() is not first


@pytest.mark.slow
@pytest.mark.parametrize("beams", [1, 5])
def test_decoding_on_one_cross_attention_cache_writes_what_plain_generate_writes(english_clips, monkeypatch, beams):
    """decoding/hf_cache.py: cross-attention keys/values computed once per file for the first
    step and the search, a file's beams attending to one copy of them, only the self-attention
    cache reordered, no cache in generate's output. Against transformers' own way (a fresh cache,
    filled by generate and reordered per beam), in float32 so that no near tie is decided by rounding."""
    import contextlib

    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    from whisper_lora.decoding import hf

    audios = [load_audio(p) for p, _ in english_clips[:4]]
    options = TranscribeOptions(pack=False, precision="fp32", beam_size=beams, return_timestamps=True)
    lean = Transcriber.from_spec("bundled:tiny.en", options).transcribe_arrays(audios)
    calls = []

    def fresh_cache(whisper, cross, beams=1):
        calls.append(cross)
        return EncoderDecoderCache(DynamicCache(config=whisper.config), DynamicCache(config=whisper.config))

    monkeypatch.setattr(hf, "lean_generate", lambda whisper, beams: contextlib.nullcontext())
    monkeypatch.setattr(hf, "decoder_cache", fresh_cache)
    plain = Transcriber.from_spec("bundled:tiny.en", options).transcribe_arrays(audios)
    assert calls
    assert [r.text for r in lean] == [r.text for r in plain]
    assert [[(s.start, s.end) for s in r.segments] for r in lean] == [[(s.start, s.end) for s in r.segments] for r in plain]
    assert all(r.text for r in lean)


@pytest.mark.slow
def test_beam_search_on_a_model_with_eager_attention_repeats_the_cross_cache(english_clips):
    """hf_cache.decoder_cache: where the model's attention is not SDPA (so the beams cannot share
    one copy of a file's keys and values), they get one copy each, and the words are the same."""
    audios = [load_audio(p) for p, _ in english_clips[:3]]
    options = TranscribeOptions(pack=False, precision="fp32", beam_size=5)
    sdpa = Transcriber.from_spec("bundled:tiny.en", options)
    eager = Transcriber.from_spec("bundled:tiny.en", options)
    eager.backend.whisper.config._attn_implementation = "eager"
    assert [r.text for r in eager.transcribe_arrays(audios)] == [r.text for r in sdpa.transcribe_arrays(audios)]
    assert eager.backend.whisper.config._attn_implementation == "eager"


@pytest.mark.parametrize("length", [0, 1, 2, 5, 12])
def test_batch_timestamp_rules_mask_what_transformers_rules_mask(tiny_random, length):
    """hf_logits.Timestamps against transformers' WhisperTimeStampLogitsProcessor: the same scores
    out, on rows that end in text, in one timestamp, in a pair, with and without timestamps before,
    and where the timestamps together outweigh the best text token and where they do not."""
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    from whisper_lora.decoding.hf_logits import Timestamps

    model, _ = tiny_random
    gen = model.generation_config
    vocab, ts, eos = model.config.vocab_size, gen.no_timestamps_token_id + 1, gen.eos_token_id
    begin = 3
    rng = torch.Generator().manual_seed(length)
    rows = []
    for r in range(24):
        seq, stamp = [], ts + int(torch.randint(0, 20, (1,), generator=rng))
        for _ in range(length):
            if torch.rand(1, generator=rng) < 0.35:
                stamp += int(torch.randint(0, 3, (1,), generator=rng))
                seq.append(min(stamp, vocab - 1))
            else:
                seq.append(int(torch.randint(0, eos, (1,), generator=rng)))
        rows.append([gen.decoder_start_token_id] * begin + seq)
    input_ids = torch.tensor(rows, dtype=torch.long).reshape(24, begin + length)
    scores = torch.randn(24, vocab, generator=rng) * 3
    scores[::3, ts:] += 4  # timestamps likelier than text in some rows
    theirs = WhisperTimeStampLogitsProcessor(gen, begin_index=begin)
    want = theirs(input_ids, scores.clone())
    got = Timestamps.like(theirs)(input_ids, scores.clone())
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got[~torch.isinf(got)], want[~torch.isinf(want)])
    if length:
        assert torch.isinf(want[:, :ts]).all(-1).any() and not torch.isinf(want[:, :ts]).all(-1).all()
