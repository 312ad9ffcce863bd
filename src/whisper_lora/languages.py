"""Every language lookup and script rule: Whisper's language codes and how each script is written.

A language is given as a code ("en"), a name ("English", "mandarin") or Whisper's token
("<|en|>") in manifests, flags and options alike; `language_code` turns each into the code.
"""

from __future__ import annotations

import re

from .errors import OptionsError

# Languages written without spaces between words: their text gets no leading space in a label,
# and packed clips' texts are joined without one.
NO_SPACE_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my"})
# Languages scored by character error rate: those above, and Korean, which is written with spaces
# but so inconsistently that CER is the usual figure for it.
CER_LANGUAGES = NO_SPACE_LANGUAGES | {"ko"}
# Languages whose text is mapped Traditional -> Simplified before scoring.
CHINESE = frozenset({"zh", "yue"})

# Kana and CJK ideographs: a character is a word. Hangul is not among them: Korean puts spaces
# between words.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Characters that take no space between them: the above, CJK punctuation and full-width forms.
NO_SPACE_CHARS = re.compile(f"[{CJK}\u3000-\u303f\uff00-\uffef]")

_SCRIPTS = (("ja", re.compile(r"[\u3040-\u30ff]")),  # kana before ideographs: Japanese mixes both
            ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
            ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
            ("th", re.compile(r"[\u0e00-\u0e7f]")))


def lookup_language(value: str | None) -> tuple[str | None, str | None]:
    """(Whisper language code, problem). None and "" give (None, None): no language given."""
    if value is None or value == "":
        return None, None
    # Imported here: transformers takes seconds to import, and most callers have no language.
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = value.strip().lower().removeprefix("<|").removesuffix("|>")
    if key in LANGUAGES:
        return key, None
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key], None
    base = key.replace("_", "-").split("-")[0]  # "zh-CN" -> "zh"
    hint = f" (use '{base}')" if base in LANGUAGES else " (use a Whisper code such as en, zh, ja, or a name)"
    return None, f"unknown language '{value}'{hint}"


def language_code(language: str | None, flag: str | None = None) -> str | None:
    """'en', 'English', 'english', '<|en|>' -> 'en'; None stays None. Unknown names are an
    OptionsError, which names `flag` (say "--language") when given."""
    code, problem = lookup_language(language)
    if problem is None:
        return code
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    where = f"{flag} {language!r}: " if flag else ""
    raise OptionsError(f"{where}{problem}; known codes: {', '.join(sorted(LANGUAGES))}")


def guess_language(text: str) -> str:
    """A scoring language from a text's script: ja, ko, zh, th, else en."""
    for code, script in _SCRIPTS:
        if script.search(text):
            return code
    return "en"


def joins_without_space(left: str, right: str) -> bool:
    """True when two texts meet between characters written without spaces (CJK)."""
    return bool(left and right and NO_SPACE_CHARS.match(left[-1]) and NO_SPACE_CHARS.match(right[0]))
