"""Real speech of people (whisper_lora.corpora): the script and transcript parsers, the split by
game level, and five LibriVox utterances of read English through transcribe and evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from whisper_lora.corpora import fillets, librivox

DIALOGS = r'''
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Wat is dit voor raar schip?")

dialogId("pc-v-etc", "font_big", "To \/etc.")
dialogStr("Met z'n allen naar \/etc om \"gezellig\" te kletsen.")
'''


def test_dialogs_give_each_line_its_dutch_text():
    lines = fillets.parse_dialogs(DIALOGS)
    assert lines == {"let-m-divna": "Wat is dit voor raar schip?",
                     "pc-v-etc": 'Met z\'n allen naar /etc om "gezellig" te kletsen.'}


def test_split_holds_out_whole_levels_and_short_lines():
    clips = [fillets.Clip(f"level{lv:02d}", f"{lv}-{k}", Path(f"/a/{lv}-{k}.ogg"), "een twee drie" if k else "Ja.")
             for lv in range(10) for k in range(10)]
    train, validation, test = fillets.split(clips)
    assert {c.level for c in test} == {"level00", "level05"}
    assert not {c.level for c in train + validation} & {"level00", "level05"}
    assert all(len(c.text.split()) >= fillets.MIN_WORDS for c in train + validation + test)
    assert len(validation) == -(-72 // fillets.VALIDATION_EVERY) and len(train) + len(validation) == 72
    assert not set(map(id, train)) & set(map(id, validation))


def test_transcription_file_is_parsed():
    text = "<s> he was not an ill disposed young man </s> (sense-0880)\n\n<s> a b </s> (x-1)\n"
    assert librivox.parse_transcription(text) == {"sense-0880": "he was not an ill disposed young man", "x-1": "a b"}


@pytest.fixture(scope="session")
def librivox_manifest(tmp_path_factory):
    """The five utterances, fetched from Debian's archive once (1.8 MB) into the user's cache."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not found: the LibriVox clips come from a Debian package")
    return librivox.write_manifest(tmp_path_factory.mktemp("librivox") / "librivox.jsonl")


def test_real_english_speech_through_transcribe_and_evaluate(librivox_manifest, tmp_path):
    from whisper_lora.cli import main

    rows = [json.loads(line) for line in librivox_manifest.read_text().splitlines()]
    assert len(rows) == 5 and all(Path(r["audio_path"]).is_file() for r in rows)
    out = tmp_path / "texts.json"
    assert main(["transcribe", "--model", "bundled:tiny.en", "--output_file", str(out),
                 *[r["audio_path"] for r in rows]]) == 0
    results = json.loads(out.read_text())["results"]
    assert len(results) == 5 and not any(r.get("error") for r in results)
    texts = " ".join(r["text"].lower() for r in results)
    for word in ("dashwood", "amiable", "selfish", "respectable"):
        assert word in texts, (word, texts)

    from whisper_lora.evaluate import EvaluateOptions, evaluate

    result = evaluate(EvaluateOptions(models=("bundled:tiny.en",), data=str(librivox_manifest), language="en"))
    scores = result.results[0].by_language["en"]
    # tiny.en makes 3 errors in these 71 words (4.2%); a broken front end or decoder makes dozens.
    assert scores.utterances == 5 and scores.wer < 0.10, scores.wer
    assert scores.raw_wer > scores.wer  # the transcripts are lower case without punctuation: raw counts that


def test_the_dutch_demo_data_is_real_speech_split_by_level(tmp_path):
    """`whisper-lora demo --language nl --quick`'s data: real recordings fetched from Debian
    (103 MB once), spread subsets, no test level in training, a long file of several people."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not found: the Dutch recordings come from Debian packages")
    import soundfile

    from whisper_lora.demo import DemoOptions, _sizes, demo_data

    opts = DemoOptions(language="nl", quick=True)
    data = demo_data(opts, tmp_path, _sizes(opts))
    assert data.counts == {"train": 24, "validation": 4, "test": 8}
    rows = {name: [json.loads(line) for line in getattr(data, name).read_text().splitlines()]
            for name in ("train", "validation", "test")}
    levels = {name: {Path(r["audio_path"]).parts[-3] for r in rs} for name, rs in rows.items()}
    assert len(levels["train"]) > 10, "a spread subset keeps many levels' voices"
    assert not levels["test"] & (levels["train"] | levels["validation"])
    assert all(r["language"] == "nl" and len(r["text"].split()) >= 2 for rs in rows.values() for r in rs)
    info = soundfile.info(str(data.long_audio))
    # The 8 quick test clips with their pauses, or 40 s of them: never a single clip.
    assert info.samplerate == 16000 and 20.0 <= info.duration <= 40.0 + 30.0
    assert data.other_language == "en" and len(data.other.read_text().splitlines()) == 5


def test_the_held_out_glossary_lists_unheard_words_among_dictionary_distractors(tmp_path):
    """benchmarks/glossary.py's and the nl demo's glossary: every held-out word no training line
    holds, spelled as said, and 4 words for each from Debian's Dutch word list that no held-out
    line says."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not found: the Dutch word list comes from a Debian package")
    from whisper_lora.corpora.fillets import write_glossary
    from whisper_lora.data.glossary import Glossary

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"audio_path": "a.ogg", "text": "Het schip ligt in de haven."}) + "\n", encoding="utf-8")
    test.write_text(json.dumps({"audio_path": "b.ogg", "text": "Het wrak van de Lemura, in de haven!"}) + "\n",
                    encoding="utf-8")
    glossary = Glossary.read(write_glossary(train, test, tmp_path / "glossary.txt"))
    held = {"wrak", "van", "Lemura"}
    assert held <= set(glossary.terms) and len(glossary.terms) == 5 * len(held)
    said = {"het", "wrak", "van", "de", "lemura", "in", "haven"}
    assert not {t.casefold() for t in glossary.terms if t not in held} & said


def test_the_demo_table_has_a_glossary_row_when_one_was_measured(tmp_path):
    from whisper_lora.demo import DemoResult, format_table

    score = lambda v: {"metric": "wer", "value": v}  # noqa: E731
    result = DemoResult(tmp_path, score(0.44), score(0.32), score(0.1), score(0.12), glossary=score(0.30),
                        files={"adapter": "a", "report": "r", "srt": "s"}, names=("Dutch", "English"))
    table = format_table(result, "bundled:base")
    assert "| Dutch, glossary" in table and "30.0%" in table
    result.glossary = None
    assert "glossary" not in format_table(result, "bundled:base")
