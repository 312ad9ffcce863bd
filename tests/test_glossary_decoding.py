"""Glossaries at decoding: reading and checking term lists, choosing a file's terms, per-row
prompts on both backends, and the second pass on the real bundled tiny.en."""

from __future__ import annotations

import pytest
import torch

from whisper_lora.audio import load_audio
from whisper_lora.decoding.biasing import choose, glossary_terms, splice
from whisper_lora.cli import main as cli_main
from whisper_lora.decoding.packing import window_terms
from whisper_lora.decoding.results import Decoded, Segment
from whisper_lora.data.glossary import PROMPT_TOKENS, Glossary, GlossaryError, prompt_text, sound_key
from whisper_lora.transcribe import TranscribeOptions, Transcriber

# bundled tiny.en writes "Trivenza" for the made-up name without a glossary (both backends)
DRUG = "The new drug is called Trivalenza and it helps with headaches."
DISTRACTORS = ["Kilimanjaro", "Ptolemy", "Helsingborg", "Oyelaran", "Marrakesh"]


# ---- reading a glossary ------------------------------------------------------------------------

def test_glossary_reads_terms_skipping_blank_comment_and_repeated_lines(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("\ufeffXelvorin\n\n# drugs above\n  Quintus   Barendrecht \nXelvorin\nZwolle", encoding="utf-8")
    g = Glossary.read(path)
    assert g.terms == ("Xelvorin", "Quintus Barendrecht", "Zwolle")
    assert g.lines == (1, 4, 6)


@pytest.mark.parametrize("content, message", [
    (b"", "no terms in it"),
    (b"\n# only a comment\n  \n", "no terms in it"),
    (b"Zwolle\nBarendrecht\nCaf\xe9\n", "line 3: not UTF-8"),
])
def test_bad_glossary_files_are_named_with_the_line(tmp_path, content, message):
    path = tmp_path / "terms.txt"
    path.write_bytes(content)
    with pytest.raises(GlossaryError, match=message) as err:
        Glossary.read(path)
    assert str(path) in str(err.value) and "--glossary" in str(err.value)


def test_missing_glossary_and_a_folder_are_errors(tmp_path):
    with pytest.raises(GlossaryError, match="file not found"):
        Glossary.read(tmp_path / "nope.txt")
    with pytest.raises(GlossaryError, match="is a folder"):
        Glossary.read(tmp_path)


def test_a_term_longer_than_the_prompt_is_an_error_naming_its_line(tmp_path, tiny_random):
    model, processor = tiny_random
    path = tmp_path / "terms.txt"
    path.write_text("Zwolle\n" + " ".join(["Barendrecht"] * 120) + "\n", encoding="utf-8")
    with pytest.raises(GlossaryError, match=rf"terms.txt, line 2: the term is \d+ tokens long, more than .*\({PROMPT_TOKENS}\)"):
        Transcriber.from_model(model, processor, TranscribeOptions(glossary=str(path)))


def test_transcribe_names_a_bad_glossary_before_loading_the_model(tmp_path, capsys):
    code = cli_main(["transcribe", "--model", "no-such-model-folder", "--glossary", str(tmp_path / "x.txt"),
                     str(tmp_path / "a.wav")])
    assert code == 1
    err = capsys.readouterr().err
    assert "--glossary" in err and "file not found" in err


# ---- choosing terms ----------------------------------------------------------------------------

def test_select_finds_misspelt_and_split_terms_and_skips_written_and_short_ones():
    g = Glossary.from_terms(["Quintus", "zeewieren", "Barendrecht", "Kilimanjaro", "Ede", "station"], "test")
    heard = "Yesterday Quintis met Baren drecht at the station near the zeewier"
    chosen = g.select(heard)
    assert chosen == ["Barendrecht", "zeewieren", "Quintus"]  # best match first
    assert g.select(heard, limit=2) == chosen[:2]
    assert g.select("nothing like any of them") == []
    assert g.select("we saw ede at the station") == []  # short terms: never; "station": written already


def test_short_terms_need_a_closer_match_than_long_ones():
    g = Glossary.from_terms(["Quintus", "Barendrecht"], "test")
    assert g.select("Kwantas Barendrekt") == ["Barendrecht"]  # 71 for the short one, 82 for the long


def test_terms_written_as_they_sound_are_found_by_their_sound_keys():
    g = Glossary.from_terms(["Quintus", "Ceylon", "Thijs", "Barendrecht"], "test")
    # spelling alone: 71, 67 and 67, under the short terms' 85; as sound keys all 100
    assert sound_key("kwintus") == sound_key("quintus") and sound_key("seilon") == sound_key("ceylon")
    assert g.select("Kwintus voer van Seilon naar Teis", language="nl") == ["Quintus", "Ceylon", "Thijs"]
    assert g.select("Kwintus voer van Seilon naar Teis", language="en") == ["Quintus", "Ceylon"]  # ij = ei: Dutch
    assert sound_key("scheveningen", "nl") == "sefeningen" and sound_key("scheveningen") == "skheveningen"


def test_window_terms_take_each_clips_best_terms_first():
    assert window_terms([["a", "b", "c"], ["d"], ["b", "e"]]) == ["a", "d", "b", "e", "c"]
    assert window_terms([[], []]) == []


# ---- keeping the second pass where it writes a term --------------------------------------------

def test_splice_takes_only_the_stretches_that_write_a_term():
    g = Glossary.from_terms(["Oyelaran", "Friday"], "test")
    first = "Please send the invoice to Miss Invoys 11 before Friday."
    second = "Clean and the invoice to Mrs Oyelaran before Friday."
    assert splice(first, second, g) == "Please send the invoice to Mrs Oyelaran before Friday."
    assert glossary_terms(second, g) == ["Oyelaran", "Friday"]


def test_timed_files_take_the_second_pass_whole_only_if_it_writes_a_new_term():
    g = Glossary.from_terms(["Xelvorin"], "test")
    first = Decoded([Segment(0, 1, "The drug is called"), Segment(1, 2, "Melvoryn.")], "en", None)
    second = Decoded([Segment(0, 1, "A drug is called"), Segment(1, 2, "Xelvorin.")], "en", None)
    worse = Decoded([Segment(0, 1, "A drug is called"), Segment(1, 2, "Melvin.")], "en", None)
    assert choose(first, second, g) is second
    assert choose(first, worse, g) is first


# ---- per-row prompts ---------------------------------------------------------------------------

def test_rows_with_prompts_of_different_lengths_decode_as_each_would_alone(tiny_random_multilingual, english_clips):
    """Left-padded prompts with their mask (HFBackend._start_ids): exact in fp32."""
    model, processor = tiny_random_multilingual
    t = Transcriber.from_model(model, processor, TranscribeOptions(language="en", precision="fp32", max_new_tokens=12))
    b = t.backend
    audios = [load_audio(p) for p, _ in english_clips[:3]]
    terms = [["Xelvorin", "Quintus Barendrecht", "Zwolle"], ["Oyelaran"], []]
    with torch.inference_mode():
        features, _ = b._features(audios)
        hidden = b.whisper.model.encoder(features).last_hidden_state
        prompts = b._row_prompts(terms)
        together, _ = b._generate(hidden, ["en"] * 3, False, prompts)
        for i in range(3):
            alone, _ = b._generate(hidden[i:i + 1], ["en"], False, [prompts[i]])
            assert together[i] == alone[0]
    assert len({len(p) for p in prompts}) == 3  # the test pads: three lengths


def test_prompt_drops_the_weakest_terms_until_it_fits(tiny_random):
    model, processor = tiny_random
    b = Transcriber.from_model(model, processor, TranscribeOptions()).backend
    terms = [f"Term{i} Barendrecht Quintus" for i in range(60)]
    ids = b._prompt(b.options, terms)
    assert len(ids) - 1 <= PROMPT_TOKENS
    text = processor.tokenizer.decode(ids[1:])
    assert text.startswith(" Term0 Barendrecht Quintus, Term1")  # the best terms stay whole
    assert text.strip() == prompt_text(terms[:text.count(",") + 1])


# ---- the real model ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "ct2"])
def test_a_glossary_term_is_spelled_right_and_distractors_change_nothing(say, english_clips, tmp_path, backend):
    drug = load_audio(say(DRUG))
    others = [load_audio(p) for p, _ in english_clips[:4]]
    t = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions(backend=backend, pack=False, precision="fp32"))
    plain = [r.text for r in t.transcribe_arrays([drug] + others)]
    assert "Trivalenza" not in plain[0]

    glossary = tmp_path / "terms.txt"
    glossary.write_text("\n".join(DISTRACTORS[:2] + ["Trivalenza"] + DISTRACTORS[2:]) + "\n", encoding="utf-8")
    t.glossary = Glossary.read(glossary)
    biased = [r.text for r in t.transcribe_arrays([drug] + others)]
    assert "Trivalenza" in biased[0]
    assert biased[1:] == plain[1:]  # files none of whose words come near a term: not decoded again

    only_distractors = Glossary.from_terms(DISTRACTORS + ["Melvin", "headache pills", "coffee"], "test")
    assert [r.text for r in t.transcribe_arrays([drug] + others, glossary=only_distractors)] == plain


@pytest.mark.slow
def test_transcribe_command_takes_a_glossary(say, tmp_path, capsys):
    glossary = tmp_path / "terms.txt"
    glossary.write_text("Trivalenza\n", encoding="utf-8")
    code = cli_main(["transcribe", "--model", "bundled:tiny.en", "--glossary", str(glossary), "--quiet",
                     str(say(DRUG))])
    assert code == 0
    assert "Trivalenza" in capsys.readouterr().out


def test_long_files_give_each_piece_the_terms_heard_in_it():
    from whisper_lora.decoding.long_form import piece_terms

    timed = [(0.0, 10.0, ["A"]), (10.0, 25.0, ["B", "A"]), (40.0, 50.0, ["C"])]
    assert piece_terms(timed, 0, 16000 * 30) == ["A", "B"]
    assert piece_terms(timed, 16000 * 30, 16000 * 30) == ["C"]
    assert piece_terms(timed, 16000 * 26, 16000 * 10) == []


def test_the_original_inference_script_takes_a_glossary(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "whisper_lora_inference.py"
    done = subprocess.run([sys.executable, str(script), "--model_path", "bundled:tiny.en", "--audio_path", "a.wav",
                           "--glossary", str(tmp_path / "missing.txt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "--glossary" in done.stderr and "missing.txt: file not found" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "ct2"])
def test_a_long_file_gets_the_terms_heard_in_its_pieces(say, english_clips, backend):
    import numpy as np

    names = ["Trivalenza", "Dorvastin", "Nortavelin"]  # made-up drugs tiny.en misspells, mostly
    drugs = [load_audio(say(DRUG.replace("Trivalenza", n))) for n in names]
    pause = np.zeros(8000, dtype=np.float32)
    parts = [load_audio(p) for p, _ in english_clips] + drugs + [load_audio(p) for p, _ in english_clips]
    audio = np.concatenate([x for part in parts for x in (part, pause)])
    assert len(audio) > 16000 * 30
    t = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions(backend=backend, precision="fp32"))
    plain = t.transcribe_array(audio).text
    t.glossary = Glossary.from_terms(names + DISTRACTORS, "test")
    biased = t.transcribe_array(audio).text
    missed = [n for n in names if n not in plain]
    assert missed and any(n in biased for n in missed), (plain, biased)
