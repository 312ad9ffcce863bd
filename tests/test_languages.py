"""Language codes from names, codes and tokens; script rules shared by labels, packing and joins."""

from __future__ import annotations

import pytest

from whisper_lora.errors import OptionsError
from whisper_lora.languages import (CER_LANGUAGES, NO_SPACE_LANGUAGES, guess_language, joins_without_space,
                                    language_code, lookup_language)
from whisper_lora.decoding.results import Segment, join_segments


@pytest.mark.parametrize("given, code", [("English", "en"), ("zh", "zh"), ("<|ja|>", "ja"), (" Mandarin ", "zh"),
                                         (None, None), ("", None)])
def test_language_code(given, code):
    assert language_code(given) == code


def test_unknown_language_names_the_flag_and_suggests_the_code():
    with pytest.raises(OptionsError, match=r"--language 'klingon': unknown language"):
        language_code("klingon", flag="--language")
    assert lookup_language("zh-CN") == (None, "unknown language 'zh-CN' (use 'zh')")


@pytest.mark.parametrize("text,lang", [("hello", "en"), ("這是", "zh"), ("こんにちは", "ja"), ("安いです", "ja"),
                                       ("안녕", "ko"), ("สวัสดี", "th"), ("Grüße", "en")])
def test_guess_language(text, lang):
    assert guess_language(text) == lang


def test_korean_is_written_with_spaces_but_scored_by_characters():
    assert "ko" not in NO_SPACE_LANGUAGES and "ko" in CER_LANGUAGES
    assert NO_SPACE_LANGUAGES < CER_LANGUAGES


def test_segments_join_without_a_space_only_between_cjk_characters():
    assert joins_without_space("你好。", "世界") and joins_without_space("です", "。")
    assert not joins_without_space("OK", "好") and not joins_without_space("", "好")
    # Korean segments keep their space: before, Hangul was joined like Chinese and two words ran together.
    assert join_segments([Segment(0, 1, "안녕하세요"), Segment(1, 2, "감사합니다")]) == "안녕하세요 감사합니다"
