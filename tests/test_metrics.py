"""Metric tables: known strings with known edit counts, agreement with jiwer, normalisation cases."""

from __future__ import annotations

import random

import jiwer
import pytest

from whisper_lora.scoring.metrics import (
    Counts,
    error_rates,
    normalize,
    normalize_for_cer,
    primary_metric,
    utterance_errors,
)

# reference, hypothesis, (S, D, I, hits) of the raw word alignment
RAW_WORD_CASES = [
    ("a b c d", "a b c d", (0, 0, 0, 4)),
    ("a b c d", "a x c d", (1, 0, 0, 3)),
    ("a b c d", "a c d", (0, 1, 0, 3)),
    ("a b c d", "a b c d e", (0, 0, 1, 4)),
    ("a b c d", "", (0, 4, 0, 0)),
    ("", "a b", (0, 0, 2, 0)),
    ("the cat sat", "The cat sat.", (2, 0, 0, 1)),  # raw: case and punctuation count
]


@pytest.mark.parametrize("ref,hyp,expected", RAW_WORD_CASES)
def test_raw_word_counts(ref, hyp, expected):
    s = utterance_errors(ref, hyp, "fr")  # a language whose normaliser leaves these alone
    got = s.raw_words
    assert (got.substitutions, got.deletions, got.insertions, got.hits) == expected


# reference, hypothesis, (S, D, I, hits) of the raw character alignment (spaces are characters)
RAW_CHAR_CASES = [
    ("abc", "abc", (0, 0, 0, 3)),
    ("abc", "abd", (1, 0, 0, 2)),
    ("ab c", "abc", (0, 1, 0, 3)),
    ("abc", "abcde", (0, 0, 2, 3)),
]


@pytest.mark.parametrize("ref,hyp,expected", RAW_CHAR_CASES)
def test_raw_char_counts(ref, hyp, expected):
    got = utterance_errors(ref, hyp, "fr").raw_chars
    assert (got.substitutions, got.deletions, got.insertions, got.hits) == expected


# reference, hypothesis, language, normalised WER
ENGLISH_NORMALISED = [
    ("The colour of the sky.", "the color of the sky", 0.0),  # British -> American spelling table
    ("It costs $20.", "it costs twenty dollars", 0.0),  # numbers and currency
    ("Mr. Smith arrived.", "Mister Smith arrived", 0.0),  # titles
    ("We won't go.", "we will not go", 0.0),  # contractions
    ("Hello, world!", "hello word", 0.5),  # one substitution of two words
]


@pytest.mark.parametrize("ref,hyp,wer", ENGLISH_NORMALISED)
def test_english_normalisation(ref, hyp, wer):
    s = utterance_errors(ref, hyp, "en")
    assert s.wer == pytest.approx(wer)
    assert s.raw_wer > 0  # the raw score still sees the difference


# reference, hypothesis, normalised (S, D, I, hits) in characters
CHINESE_CASES = [
    ("這是一個測試。", "这是一个测试", (0, 0, 0, 6)),  # Traditional vs Simplified, punctuation
    ("今天天气很好！", "今天 天气 很好", (0, 0, 0, 6)),  # spaces are not characters in Chinese
    ("我们，明天见？", "我们明天見", (0, 0, 0, 5)),  # full-width punctuation; 見 -> 见
    ("我喜欢喝咖啡", "我喜欢喝茶", (1, 1, 0, 4)),  # 咖啡 -> 茶: one substitution, one deletion
    ("你好", "你好吗", (0, 0, 1, 2)),
    ("ＡＢＣ公司", "abc公司", (0, 0, 0, 5)),  # full-width Latin letters, case
]


@pytest.mark.parametrize("ref,hyp,expected", CHINESE_CASES)
def test_chinese_cer(ref, hyp, expected):
    s = utterance_errors(ref, hyp, "zh")
    got = s.chars
    assert (got.substitutions, got.deletions, got.insertions, got.hits) == expected
    assert s.primary_metric == "cer" and s.primary == s.cer


def test_chinese_normalisation_strings():
    assert normalize_for_cer("「這是」測試，對嗎？", "zh") == "这是测试对吗"
    assert normalize_for_cer("漢字 轉換", "Chinese") == "汉字转换"
    # Cantonese is mapped too; Japanese is not (its kanji are not Traditional Chinese)
    assert normalize_for_cer("廣東話", "yue") == "广东话"
    assert normalize_for_cer("東京へ行きます。", "ja") == "東京へ行きます"


def test_thai_keeps_vowel_marks():
    # BasicTextNormalizer would turn combining vowel marks into spaces; ours keeps them.
    assert normalize_for_cer("สวัสดี ครับ!", "th") == "สวัสดีครับ"


@pytest.mark.parametrize("language,metric", [
    ("zh", "cer"), ("yue", "cer"), ("ja", "cer"), ("ko", "cer"), ("th", "cer"), ("my", "cer"),
    ("en", "wer"), ("de", "wer"), ("chinese", "cer"), ("English", "wer"), (None, "wer"),
])
def test_primary_metric(language, metric):
    assert primary_metric(language) == metric


def test_counts_rate_edge_cases():
    assert Counts().rate == 0.0
    assert Counts(insertions=2).rate == float("inf")
    assert Counts(substitutions=1, hits=3).rate == 0.25


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"], "en")


def _random_sentences(rng, n):
    words = ["the", "cat", "sat", "on", "a", "mat", "Dog", "ran", "home,", "quickly.", "it's", "20"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) for _ in range(n)]


@pytest.mark.parametrize("language", ["en", "fr", "zh"])
def test_agrees_with_jiwer(language):
    rng = random.Random(7)
    refs = _random_sentences(rng, 30)
    refs[0] = "the cat"  # at least one non-empty reference
    hyps = _random_sentences(rng, 30)
    s = error_rates(refs, hyps, language)
    assert s.utterances == 30
    assert s.raw_wer == pytest.approx(jiwer.wer(refs, hyps))
    assert s.raw_cer == pytest.approx(jiwer.cer(refs, hyps))
    n_refs = [normalize(t, language) for t in refs]
    n_hyps = [normalize(t, language) for t in hyps]
    assert s.wer == pytest.approx(jiwer.wer(n_refs, n_hyps))
    c_refs = [normalize_for_cer(t, language) for t in refs]
    c_hyps = [normalize_for_cer(t, language) for t in hyps]
    assert s.cer == pytest.approx(jiwer.cer(c_refs, c_hyps))
    out = jiwer.process_words(n_refs, n_hyps)
    assert (s.words.substitutions, s.words.deletions, s.words.insertions) == (
        out.substitutions, out.deletions, out.insertions)
    # summing per-utterance scores gives the corpus score
    total = sum((utterance_errors(r, h, language) for r, h in zip(refs, hyps)), start=error_rates([], [], language))
    assert total == s
