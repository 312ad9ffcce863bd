"""Glossary-aware training: which terms a training clip's prompt lists, the decoder input and
loss mask the collator builds from them, and short real runs with packing and timestamps."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from whisper_lora.errors import OptionsError
from whisper_lora.data.glossary import GlossaryError, normalize, prompt_text
from whisper_lora.tokens import IGNORE_INDEX
from whisper_lora.training.dataset import Collator, prompt_token_ids
from whisper_lora.training.options import TrainOptions
from whisper_lora.training.prompt_terms import PromptTerms, merge

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["De zeewieren bloeien in Zwolle.", "Het wrak van de Lemura ligt hier.", "De zeewieren zijn groen.",
         "Wat is dit voor raar schip?", "De octopus heeft acht armen.", "Het schip ligt in Zwolle."]


def test_prompt_terms_are_own_rare_words_among_distractors_and_repeat_per_draw():
    terms = PromptTerms(TEXTS, share=1.0, seed=3)
    assert terms.rare[1] == ["Lemura"]  # "ligt": too short to list; "wrak": too
    assert "zeewieren" in terms.rare[0] and "Zwolle" in terms.rare[0]  # in two transcripts: still rare
    assert "De" not in terms.rare[0]  # shorter than a term can be
    seen_own = seen_none = 0
    for draw in range(40):
        listed = terms(1, draw)
        assert listed == terms(1, draw)  # the same draw, the same list
        own = [t for t in listed if f" {normalize(t)} " in f" {normalize(TEXTS[1])} "]
        assert len(own) <= 3 and len(listed) - len(own) >= 1
        seen_own += bool(own)
        seen_none += not own
    assert seen_own > 20 and seen_none > 3  # mostly some of its words, sometimes none
    assert terms(1, 0) != terms(1, 1) or terms(1, 2) != terms(1, 3)


def test_prompt_share_and_glossary_distractors():
    from whisper_lora.data.glossary import Glossary

    glossary = Glossary.from_terms(["Barendrecht", "Kilimanjaro", "octopus", "Ptolemy"], "test")
    terms = PromptTerms(TEXTS, share=0.5, seed=0, glossary=glossary)
    drawn = [terms(i, d) for i in range(len(TEXTS)) for d in range(30)]
    share = sum(t is not None for t in drawn) / len(drawn)
    assert 0.35 < share < 0.65
    for i in range(len(TEXTS)):
        for d in range(20):
            listed = terms(i, d) or []
            extra = [t for t in listed if t not in terms.rare[i]]
            assert set(extra) <= set(glossary.terms)  # distractors come from the glossary
    # a glossary term the transcript says is one of its own, listed as such
    assert any("octopus" in (terms(4, d) or []) for d in range(40))


def test_merge_takes_each_clips_terms_in_turn_up_to_the_limit():
    assert merge([["a", "b"], None, ["c", "a", "d"]]) == ["a", "c", "b", "d"]
    assert merge([["a", "b", "c"], ["d", "e", "f"]], limit=3) == ["a", "d", "b"]
    assert merge([None, []]) is None


@pytest.fixture(scope="module")
def tiny(tiny_random_multilingual):
    return tiny_random_multilingual


@pytest.fixture(scope="module")
def tiny_multilingual_folder(tiny_random_multilingual, tmp_path_factory):
    model, processor = tiny_random_multilingual
    folder = tmp_path_factory.mktemp("tiny-random-ml")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _items(processor, prompts):
    tok = processor.tokenizer
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    labels = [sot] + tok.encode(" het wrak van de Lemura", add_special_tokens=False) + [tok.eos_token_id]
    return sot, [{"input_features": np.random.default_rng(k).standard_normal((80, 3000)).astype(np.float32),
                  "labels": labels, "language": "nl", "index": k, "prompt": p} for k, p in enumerate(prompts)]


def test_prompt_positions_carry_no_loss_and_unprompted_rows_keep_their_loss(tiny):
    model, processor = tiny
    sot, items = _items(processor, [None, ["Lemura", "Zwolle"]])
    plain = Collator(sot)(items)
    collate = Collator(sot, prompt_ids=functools.partial(prompt_token_ids, processor.tokenizer))
    batch = collate(items)
    ids, labels = batch["decoder_input_ids"], batch["labels"]
    prev = processor.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    prompt = prompt_token_ids(processor.tokenizer, ["Lemura", "Zwolle"], 448)
    assert processor.tokenizer.decode(prompt[1:]) == " " + prompt_text(["Lemura", "Zwolle"])
    k = len(prompt)
    assert ids[1, 0] == prev and ids[1, k] == sot
    assert (labels[1, :k] == IGNORE_INDEX).all() and labels[1, k] != IGNORE_INDEX
    targets = [t for t in plain["labels"][0].tolist() if t != IGNORE_INDEX]
    assert labels[1, k:].tolist() == targets  # the same targets after the prompt
    model.eval()
    with torch.no_grad():
        width = plain["labels"].shape[1]
        before = model(input_features=plain["input_features"][:1], labels=plain["labels"][:1]).loss
        after = model(input_features=batch["input_features"][:1], labels=labels[:1, :width],
                      decoder_input_ids=ids[:1, :width]).loss
        prompted = model(input_features=batch["input_features"][1:], labels=labels[1:],
                         decoder_input_ids=ids[1:]).loss
    assert torch.allclose(before, after)  # the row without a prompt: Whisper's own shift, same loss
    assert not torch.allclose(before, prompted)


def test_a_prompt_is_cut_to_the_room_the_labels_leave(tiny):
    _, processor = tiny
    terms = [f"Barendrecht{i}" for i in range(40)]
    ids = prompt_token_ids(processor.tokenizer, terms, 30)
    assert 1 < len(ids) <= 30
    assert prompt_token_ids(processor.tokenizer, terms, 2) == []
    assert len(prompt_token_ids(processor.tokenizer, terms * 10, 448)) <= 224  # the prompt's own limit


def test_bad_glossary_training_flags(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"audio_path": "a.wav", "text": "x"}\n', encoding="utf-8")
    base = dict(model_name_or_path="bundled:tiny.en", train_file=str(train), output_dir=str(tmp_path / "out"))
    with pytest.raises(OptionsError, match="--prompt_share 1.5"):
        TrainOptions(**base, glossary_training=True, prompt_share=1.5)
    with pytest.raises(GlossaryError, match="--glossary .*nope.txt: file not found"):
        TrainOptions(**base, glossary=str(tmp_path / "nope.txt"))
    options = TrainOptions(**base, glossary=None, glossary_training=False)
    assert not options.prompted


def _run(args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "whisper_lora", "train", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.parametrize("extra", [[], ["--timestamps", "--no_pack_clips"]])
def test_a_glossary_aware_run_trains_packed_and_with_timestamps(tiny_multilingual_folder, english_clips, tmp_path,
                                                                extra):
    rows = [{"audio_path": str(p), "text": t, "language": "en"} for p, t in english_clips]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    glossary = tmp_path / "terms.txt"
    glossary.write_text("coffee\nwindow\nKilimanjaro\nPtolemy\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = _run(["--model_name_or_path", tiny_multilingual_folder, "--train_file", train, "--output_dir", out,
                 "--max_steps", "2", "--per_device_train_batch_size", "3", "--warmup_steps", "0",
                 "--language", "en", "--glossary", glossary, "--prompt_share", "1", *extra])
    assert "glossary-aware training: 100% of the clips prompted" in proc.stdout + proc.stderr
    flags = json.loads((out / "training_config.json").read_text())["flags"]
    assert flags["glossary"] == str(glossary) and flags["prompt_share"] == 1.0
    assert (out / "adapter_model.safetensors").is_file()
