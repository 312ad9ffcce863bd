"""Word n-gram language models: building (Kneser-Ney, ARPA), reading (Python and kenlm agree),
the bad files a user can give, and fusion into beam search on the real bundled tiny.en."""

from __future__ import annotations

import math

import pytest

from whisper_lora.data import lm
from whisper_lora.cli import main as cli_main
from whisper_lora.decoding.lm_fusion import _ends_word, split_partial
from whisper_lora.errors import OptionsError
from whisper_lora.transcribe import TranscribeOptions, Transcriber

TEXT = [
    "the new drug is called trivalenza",
    "trivalenza helps with headaches",
    "the patient was given trivalenza for the headache",
    "send the invoice to mrs oyelaran",
    "mrs oyelaran paid the invoice on friday",
    "the drug helps the patient",
]


@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "text.arpa"
    path.write_text(lm.build([lm.words(t) for t in TEXT], order=3), encoding="utf-8")
    return path


def vocabulary(path) -> list[str]:
    section = path.read_text(encoding="utf-8").split("\\1-grams:")[1].split("\\2-grams:")[0]
    return [line.split("\t")[1] for line in section.strip().splitlines() if line.split("\t")[1] != lm.BOS]


@pytest.mark.parametrize("context", [(), ("the",), ("<s>",), ("the", "drug"), ("mrs", "oyelaran"), ("unheard", "words")])
def test_every_context_gives_a_distribution_that_sums_to_one(arpa, context):
    model = lm._read_arpa(arpa)
    total = sum(10 ** model._query(context, w) for w in vocabulary(arpa))
    assert total == pytest.approx(1.0, abs=1e-4)


def test_seen_continuations_beat_unseen_ones_and_unknown_words_still_have_a_probability(arpa):
    model = lm._read_arpa(arpa)
    assert model.logprob(("the", "new"), "drug") > model.logprob(("the", "new"), "invoice")
    assert model.logprob((), "trivalenza") > model.logprob((), "zwolle") > -20  # <unk>, not minus infinity
    assert model.sentence(lm.words("The new drug is called Trivalenza.")) > model.sentence(
        lm.words("The new drug is called Trivenza."))


def test_kenlm_reads_the_same_model(arpa):
    kenlm = pytest.importorskip("kenlm")  # in the test extras; a plain install reads ARPA in Python
    python, native = lm._read_arpa(arpa), lm.load(arpa)
    model = kenlm.Model(str(arpa))
    for text in TEXT + ["the invoice helps zwolle", "friday"]:
        words = lm.words(text)
        assert python.sentence(words) == pytest.approx(native.sentence(words), abs=1e-4)
        assert python.sentence(words) == pytest.approx(model.score(" ".join(words), bos=True, eos=True), abs=1e-4)


def test_words_and_unfinished_words():
    assert lm.words("Trivalenza, zo'n zee-egel!") == ["trivalenza", "zo'n", "zee-egel"]
    assert split_partial(" the new dru") == (" the new ", "dru")
    assert split_partial(" the new drug,") == (" the new drug,", "")
    assert split_partial(" zo'") == (" ", "zo'")
    assert _ends_word("Ġdrug") and _ends_word(",") and _ends_word(".")
    assert not _ends_word("ug") and not _ends_word("'s") and not _ends_word("Ã©")  # é's first byte


def test_a_listed_glossary_term_is_never_scored_down(arpa, bundled_tiny_en):
    from whisper_lora.decoding.lm_fusion import LMFusion, word_ends

    tokenizer = bundled_tiny_en[1].tokenizer
    eos = tokenizer.eos_token_id
    fusion = LMFusion(lm.load(arpa), tokenizer, 0.3, 1.0, 0, eos, word_ends(tokenizer, eos, eos + 1),
                      listed=[["Zwolle Centraal"], []], beams=2)
    row = tuple(tokenizer.encode(" the train to zwolle", add_special_tokens=False))
    unlisted = fusion._costs(row, fusion._listed(2 // fusion.beams))[0]  # row 2: item 1's beams, no terms
    listed = fusion._costs(row, fusion._listed(1 // fusion.beams))[0]  # row 1: item 0's second beam
    assert unlisted < 0 == listed  # an unknown word costs; the same word listed costs nothing
    assert fusion.total(list(row) + [eos], 0) > fusion.total(list(row) + [eos], 1)


def test_lm_build_command_writes_a_model_from_text_or_a_manifest(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "domain.arpa"
    assert cli_main(["lm", "build", "--text", str(text), "--output", str(out), "--order", "2"]) == 0
    assert "2-gram model" in capsys.readouterr().out
    assert lm.load(out).order == 2 and not list(out.parent.glob(".*tmp*"))


@pytest.mark.parametrize("content, message", [
    (b"", "no words in it"),
    (b"!!!\n...\n", "no words in it"),
    (b"caf\xe9 au lait\n", "not UTF-8"),
])
def test_bad_text_is_named(tmp_path, capsys, content, message):
    text = tmp_path / "corpus.txt"
    text.write_bytes(content)
    assert cli_main(["lm", "build", "--text", str(text), "--output", str(tmp_path / "x.arpa")]) == 1
    err = capsys.readouterr().err
    assert "--text" in err and str(text) in err and message in err
    assert not (tmp_path / "x.arpa").exists()


def test_bad_model_files_are_named(tmp_path):
    with pytest.raises(lm.LMError, match="no such file; build one with `whisper-lora lm build"):
        lm.load(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tthe\n-1.0\n\\end\\\n", encoding="utf-8")
    with pytest.raises(lm.LMError, match=r"bad.arpa, line 6: not an ARPA n-gram line"):
        lm._read_arpa(bad)
    empty = tmp_path / "empty.arpa"
    empty.write_text("\\data\\\n\\end\\\n", encoding="utf-8")
    with pytest.raises(lm.LMError, match="no n-grams in it"):
        lm._read_arpa(empty)


def test_lm_options_are_checked_before_any_model_loads(tmp_path, arpa, capsys):
    with pytest.raises(OptionsError, match="--lm_weight -1"):
        TranscribeOptions(lm=str(arpa), lm_weight=-1)
    with pytest.raises(OptionsError, match="--backend ct2"):
        TranscribeOptions(lm=str(arpa), backend="ct2")
    code = cli_main(["transcribe", "--model", "no-such-model-folder", "--lm", str(tmp_path / "x.arpa"),
                     str(tmp_path / "a.wav")])
    assert code == 1 and "x.arpa: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_code:  # argparse: usage and exit status 2
        cli_main(["evaluate", "--model", "no-such-model", "--data", str(arpa), "--lm", str(arpa),
                  "--lm_weight", "0.1,x"])
    assert exit_code.value.code == 2 and "'0.1,x': give numbers separated by commas" in capsys.readouterr().err


# ---- fusion on the real model --------------------------------------------------------------------

@pytest.mark.slow
def test_the_language_model_spells_a_word_it_knows_and_does_not_worsen_its_domain(say, english_clips, tmp_path):
    from whisper_lora.audio import load_audio

    from whisper_lora.scoring.metrics import error_rates

    drug = load_audio(say("The new drug is called Trivalenza and it helps with headaches."))
    others = [load_audio(p) for p, _ in english_clips[:3]]
    references = [t for _, t in english_clips[:3]]
    # The user's text holds these files' sentences too (it is their domain): the language model
    # may only move them toward what was said. Words it never saw cost it, so text of another
    # domain can change (the weight is chosen on validation clips for that).
    arpa = tmp_path / "domain.arpa"
    arpa.write_text(lm.build([lm.words(t) for t in TEXT + references], order=3), encoding="utf-8")
    options = TranscribeOptions(pack=False, precision="fp32", beam_size=5)
    plain = [r.text for r in Transcriber.from_spec("bundled:tiny.en", options).transcribe_arrays([drug] + others)]
    assert "trivalenza" not in plain[0].lower()  # tiny.en writes "Trivenza"
    fused = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions(pack=False, precision="fp32", beam_size=5,
                                                                       lm=str(arpa)))
    texts = [r.text for r in fused.transcribe_arrays([drug] + others)]
    assert "trivalenza" in texts[0].lower()
    assert error_rates(references, texts[1:], "en").wer <= error_rates(references, plain[1:], "en").wer
    assert math.isfinite(fused.backend.lm.logprob((), "trivalenza"))


def test_lm_with_a_ctranslate2_model_is_refused_before_it_loads(tmp_path, arpa):
    from whisper_lora.evaluate import EvaluateOptions

    ct2 = tmp_path / "ct2-model"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"not read")
    for make in (lambda: Transcriber.from_spec(str(ct2), TranscribeOptions(lm=str(arpa))),
                 lambda: EvaluateOptions(models=("bundled:tiny.en", str(ct2)), data=str(arpa), lm=str(arpa))):
        with pytest.raises(OptionsError, match=f"--lm with {ct2}: a CTranslate2 model's beam search"):
            make()


@pytest.mark.slow
def test_evaluate_compares_language_model_weights(english_clips, arpa, tmp_path):
    import json

    from whisper_lora.evaluate import EvaluateOptions, evaluate

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_path": str(p), "text": t}) + "\n" for p, t in english_clips[:2]),
                        encoding="utf-8")
    evaluation = evaluate(EvaluateOptions(models=("bundled:tiny.en",), data=str(manifest), beam_size=2,
                                          lm=str(arpa), lm_weights=(0.0, 0.3)))
    assert [r.label for r in evaluation.results] == ["bundled:tiny.en lm 0", "bundled:tiny.en lm 0.3"]
