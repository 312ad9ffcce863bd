"""synthetic/sentences.py: the hand-written lists are unique and evaluation is never trained on;
generated sentences are distinct and draw on a broad vocabulary."""

from __future__ import annotations

import random
import re

import pytest

from whisper_lora.synthetic.sentences import generated_sentences, read_sentences, zh_generated_sentence, zh_word_lists


def words(text):
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


@pytest.mark.parametrize("language, n_eval", [("en", 60), ("zh", 40)])
def test_sentence_lists_are_unique_and_evaluation_is_never_trained_on(language, n_eval):
    train, evaluation = read_sentences(language, "train"), read_sentences(language, "eval")
    assert len(evaluation) >= n_eval and len(train) >= 3 * len(evaluation)
    assert len(set(train)) == len(train) and len(set(evaluation)) == len(evaluation)
    key = (lambda s: " ".join(words(s))) if language == "en" else (lambda s: re.sub(r"\W", "", s))
    assert not {key(s) for s in train} & {key(s) for s in evaluation}
    # Numbers are spelled out: a digit in a reference would score a correct "twenty" as an error.
    assert not any(re.search(r"\d", s) for s in train + evaluation)


def test_english_training_text_has_a_broad_vocabulary():
    vocabulary = {w for s in read_sentences("en", "train") for w in words(s)}
    assert len(vocabulary) > 1200


def test_mandarin_generated_sentences_use_jieba_words_broadly():
    lists = zh_word_lists()
    assert len(lists["n"]) == 3000 and len(lists["v"]) == 1500 and "国家" in lists["n"]
    rng = random.Random(0)
    sentences = [zh_generated_sentence(rng) for _ in range(300)]
    for s in sentences:
        assert "{" not in s and re.fullmatch(r"[\u4e00-\u9fff，。？]+", s), s
    used = {w for w in lists["n"] + lists["v"] + lists["a"] if any(w in s for s in sentences)}
    assert len(used) > 400  # hundreds of distinct content words, not a small bank


def test_english_pairs_are_distinct_pairs_of_the_list():
    pairs = generated_sentences("en", 5, random.Random(0), ["A one.", "B two.", "C three."])
    assert len(set(pairs)) == 5 and all(p.count(".") == 2 for p in pairs)
