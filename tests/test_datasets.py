"""synthetic/datasets.py: splits are disjoint and deterministic, manifests are in the original
README's format and readable, and clips are real speech of about the right length.
No Whisper model runs here."""

from __future__ import annotations

import json
import re

import pytest
import soundfile

from whisper_lora.synthetic.datasets import DEFAULTS, DatasetOptions, build_dataset, split_sentences
from whisper_lora.synthetic.sentences import read_sentences
from whisper_lora.synthetic.tts import Voice
from whisper_lora.errors import OptionsError
from whisper_lora.data.manifest import read_manifest


def words(text):
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


@pytest.mark.parametrize("language, n_train", [("en", 240), ("en", 600), ("zh", 200)])
def test_splits_are_disjoint_sized_and_deterministic(language, n_train):
    opts = DatasetOptions(language=language, n_train=n_train).resolved()
    splits = split_sentences(opts)
    assert len(splits.train) == n_train
    assert len(splits.validation) == opts.n_val and len(splits.test) == opts.n_test
    train, val, test = set(splits.train), set(splits.validation), set(splits.test)
    assert len(train) == n_train  # no sentence twice
    assert not train & val and not train & test and not val & test
    # A generated English pair must not smuggle in a validation sentence either.
    assert not any(v in t for v in val for t in train)
    assert set(splits.long) == set(read_sentences(language, "eval")) and splits.long[:opts.n_test] == splits.test
    assert split_sentences(opts) == splits
    other_seed = split_sentences(DatasetOptions(language=language, n_train=n_train, seed=1).resolved())
    assert other_seed.train != splits.train and other_seed.test != splits.test


def test_generated_share_follows_the_options():
    en = split_sentences(DatasetOptions(language="en", n_train=600).resolved())
    assert en.generated == 600 - (len(read_sentences("en", "train")) - DEFAULTS["en"].n_val)
    zh = split_sentences(DatasetOptions(language="zh", n_train=100).resolved())
    assert zh.generated == 50  # natural_share 0.5 by default for Mandarin
    natural = set(read_sentences("zh", "train"))
    assert sum(s in natural for s in zh.train) == 50


def test_voice_parsing_and_option_errors():
    assert Voice.parse("en-gb-scotland+m3:150:40") == Voice("en-gb-scotland+m3", 150, 40)
    assert Voice.parse("cmn") == Voice("cmn", 160, 50)
    assert str(Voice("en-us", 170, 45)) == "en-us:170:45"
    for bad in ("en us", "en-us:fast", "en-us:160:50:1", "en-us:20", "en-us:160:120", ""):
        with pytest.raises(OptionsError):
            Voice.parse(bad)
    with pytest.raises(OptionsError, match="n_test 61: there are only 60"):
        DatasetOptions(n_test=61).resolved()
    with pytest.raises(OptionsError, match="n_train must be a positive"):
        DatasetOptions(n_train=0).resolved()
    with pytest.raises(OptionsError, match="other_voice must differ"):
        DatasetOptions(voice="en-us", other_voice="en-us:160:50").resolved()
    with pytest.raises(OptionsError, match="language 'fr'"):
        DatasetOptions(language="fr").resolved()


def read_rows(path):
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and rows
    return rows


@pytest.fixture(scope="module")
def small_english(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_en")
    return build_dataset(out, language="en", n_train=4, n_val=2, n_test=3, long_seconds=12)


def test_english_build_writes_readme_format_manifests_of_real_speech(small_english):
    d = small_english
    for path, n in ((d.train, 4), (d.validation, 2), (d.test, 3), (d.test_other_voice, 3)):
        rows = read_rows(path)
        assert len(rows) == n
        for row in rows:
            assert set(row) == {"audio_path", "text"}  # exactly the original README's two keys
            assert row["audio_path"].startswith("./audio/")
        manifest_rows = read_manifest(path)  # the project's own reader accepts it
        for row, mrow in zip(rows, manifest_rows):
            info = soundfile.info(mrow.audio_path)
            n_words = len(words(row["text"]))
            # espeak-ng at 160 words a minute: ~0.375 s a word; jittered clips +-10%.
            assert 0.2 * n_words < info.duration < 0.7 * n_words + 1.0, (row, info.duration)
    texts = [r["text"] for r in read_rows(d.test)]
    assert [r["text"] for r in read_rows(d.test_other_voice)] == texts
    assert all(a["audio_path"] != b["audio_path"] for a, b in zip(read_rows(d.test), read_rows(d.test_other_voice)))
    info = json.loads(d.info.read_text())
    assert info["voice"] == str(DEFAULTS["en"].voice) and info["counts"]["train"] == 4


def test_long_file_segments_match_its_audio(small_english):
    d = small_english
    [row] = read_rows(d.long)
    segments = row["segments"]
    assert len(segments) >= 3 and row["text"] == " ".join(s["text"] for s in segments)
    samples, rate = soundfile.read(d.long_audio, dtype="float32")
    duration = len(samples) / rate
    assert 12 <= duration < 12 + 6
    previous_end = 0.0
    for s in segments:
        assert previous_end < s["start"] < s["end"] <= duration
        assert s["end"] - s["start"] > 0.2 * len(words(s["text"]))
        # Speech inside a segment, silence in the pause before it.
        inside = samples[int(s["start"] * rate): int(s["end"] * rate)]
        gap = samples[int(previous_end * rate) + int(0.05 * rate): int(s["start"] * rate) - int(0.05 * rate)]
        assert abs(inside).max() > 0.1 and (gap.size == 0 or abs(gap).max() < 0.02)
        # The times are those of the speech itself: sound within 60 ms of either end.
        assert abs(inside[:int(0.06 * rate)]).max() > 0.01 and abs(inside[-int(0.06 * rate):]).max() > 0.01
        previous_end = s["end"]
    assert set(s["text"] for s in segments) <= set(read_sentences("en", "eval"))
    assert read_manifest(d.long)[0].segments == segments


def test_rebuild_reuses_clips_and_writes_identical_manifests(small_english, tmp_path):
    d = small_english
    before = {p: p.stat().st_mtime_ns for p in (d.folder / "audio").iterdir() if not p.name.startswith("long-")}
    manifests = {p: p.read_text() for p in (d.train, d.validation, d.test, d.test_other_voice, d.long)}
    again = build_dataset(d.folder, language="en", n_train=4, n_val=2, n_test=3, long_seconds=12)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # cached: nothing spoken again
    assert {p: p.read_text() for p in manifests} == manifests
    assert again.counts == d.counts


def test_mandarin_build_tags_rows_with_their_language(tmp_path):
    d = build_dataset(tmp_path, language="zh", n_train=4, n_val=1, n_test=2, long_seconds=6)
    rows = read_rows(d.train)
    assert len(rows) == 4 and all(r["language"] == "zh" for r in rows)
    assert sum(r["text"] in set(read_sentences("zh", "train")) for r in rows) == 2  # half generated
    for r in read_manifest(d.test):
        assert soundfile.info(r.audio_path).duration > 1.0
    [long_row] = read_rows(d.long)
    assert long_row["language"] == "zh" and long_row["text"] == "".join(s["text"] for s in long_row["segments"])
