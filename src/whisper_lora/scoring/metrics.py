"""Word and character error rates, raw and normalised, with their edit counts.

Raw scores compare the strings as written (case and punctuation count). Normalised scores first
apply the normaliser the Whisper paper used, so that "Mr. Smith's colour" and "mister smith's color"
match:
  English          transformers' EnglishTextNormalizer (numbers, spellings, contractions, fillers),
                   with the British->American spelling table that the whisper-normalizer package ships
  CER languages    (Chinese, Japanese, Korean, Thai, Lao, Khmer, Burmese, Cantonese) NFKC, lower case,
                   punctuation and symbols removed; for CER also all whitespace removed (word breaks
                   are not written in most of them, so spaces in a reference are arbitrary); Chinese
                   and Cantonese also mapped from Traditional to Simplified with OpenCC, so a correct
                   transcript in the other script scores zero
  other languages  transformers' BasicTextNormalizer
The counts come from jiwer (process_words / process_characters), so every figure equals jiwer's on
the same strings; a corpus score sums the edits over utterances, as jiwer does.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..languages import CER_LANGUAGES, CHINESE, language_code

log = logging.getLogger(__name__)

def primary_metric(language: str | None) -> str:
    """'cer' for languages written without spaces between words, else 'wer'."""
    return "cer" if language_code(language) in CER_LANGUAGES else "wer"


@functools.lru_cache(maxsize=1)
def english_spelling_mapping() -> dict[str, str]:
    """British -> American spellings (1,739 words) used by Whisper's English normaliser.

    The hub's normalizer.json holds the same table, but nothing here may reach the hub, so it is
    read from the whisper-normalizer package, which ships it as data."""
    from importlib import resources

    try:
        table = resources.files("whisper_normalizer") / "normalizers" / "english.json"
        return json.loads(table.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        log.warning("English spelling table not found (%s): install whisper-normalizer; "
                    "normalised English scores will not equate British and American spellings", exc)
        return {}


@functools.lru_cache(maxsize=None)
def _opencc_t2s():
    import opencc

    return opencc.OpenCC("t2s")


_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]|\(([^)]+?)\)")  # [noise], <unk>, (laughs): not speech


def _cer_normalize(text: str, chinese: bool) -> str:
    text = unicodedata.normalize("NFKC", text).lower()  # full-width letters and digits -> ASCII
    text = _BRACKETED.sub("", text)
    if chinese:
        text = _opencc_t2s().convert(text)
    # Punctuation (P*) and symbols (S*) become spaces, but combining marks (M*) stay: Thai, Lao,
    # Khmer and Burmese vowels are marks, and BasicTextNormalizer would turn them into spaces.
    return "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)


@functools.lru_cache(maxsize=None)
def normalizer(language: str | None) -> Callable[[str], str]:
    """The text normaliser for a language (a code, a name or None for unknown)."""
    code = language_code(language)
    if code == "en":
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        return EnglishTextNormalizer(english_spelling_mapping())
    if code in CER_LANGUAGES:
        return functools.partial(_cer_normalize, chinese=code in CHINESE)
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer()


def normalize(text: str, language: str | None) -> str:
    """Normalise text for word scoring; surrounding and repeated whitespace is collapsed."""
    return " ".join(normalizer(language)(text).split())


def normalize_for_cer(text: str, language: str | None) -> str:
    """Normalise text for character scoring: as `normalize`, and for CER languages with all
    whitespace removed, since their word breaks are not written (or not consistently)."""
    text = normalize(text, language)
    return text.replace(" ", "") if language_code(language) in CER_LANGUAGES else text


@dataclass(frozen=True)
class Counts:
    """Edit operations aligning hypotheses to references, in words or in characters."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0  # reference units matched exactly

    @property
    def reference_length(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """errors / reference length; 0 for an empty reference with no insertions, inf with some."""
        if self.reference_length == 0:
            return 0.0 if self.insertions == 0 else float("inf")
        return self.errors / self.reference_length

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                      self.insertions + other.insertions, self.hits + other.hits)


@dataclass(frozen=True)
class Scores:
    """Error rates of hypotheses against references, raw and normalised.

    Use `primary` for the one figure to report: normalised CER for CER languages, else normalised WER."""

    language: str | None  # language code the normaliser was chosen for (None: basic normaliser)
    utterances: int = 0  # number of reference/hypothesis pairs scored
    raw_words: Counts = field(default_factory=Counts)  # as written: case and punctuation count
    raw_chars: Counts = field(default_factory=Counts)
    words: Counts = field(default_factory=Counts)  # after normalisation
    chars: Counts = field(default_factory=Counts)

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def raw_wer(self) -> float:
        return self.raw_words.rate

    @property
    def raw_cer(self) -> float:
        return self.raw_chars.rate

    @property
    def primary_metric(self) -> str:
        return primary_metric(self.language)

    @property
    def primary(self) -> float:
        return self.cer if self.primary_metric == "cer" else self.wer

    def __add__(self, other: "Scores") -> "Scores":
        if self.utterances and other.utterances and self.language != other.language:
            raise ValueError(f"cannot add scores of languages {self.language} and {other.language}")
        return Scores(self.language if self.utterances else other.language,
                      self.utterances + other.utterances,
                      self.raw_words + other.raw_words, self.raw_chars + other.raw_chars,
                      self.words + other.words, self.chars + other.chars)

    def as_dict(self) -> dict:
        """Flat figures for JSON/CSV: rates and S/D/I/N for each of the four measures."""
        out: dict = {"language": self.language, "utterances": self.utterances,
                     "primary_metric": self.primary_metric, "primary": self.primary}
        for name, counts in (("wer", self.words), ("cer", self.chars),
                             ("raw_wer", self.raw_words), ("raw_cer", self.raw_chars)):
            out[name] = counts.rate
            out[f"{name}_substitutions"] = counts.substitutions
            out[f"{name}_deletions"] = counts.deletions
            out[f"{name}_insertions"] = counts.insertions
            out[f"{name}_reference_length"] = counts.reference_length
        return out


def _counts(output) -> Counts:
    return Counts(output.substitutions, output.deletions, output.insertions, output.hits)


def _measure(references: list[str], hypotheses: list[str]) -> tuple[Counts, Counts]:
    """(word counts, character counts) from jiwer; it treats an empty string as no words."""
    import jiwer

    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return _counts(words), _counts(chars)


def error_rates(references: Sequence[str], hypotheses: Sequence[str], language: str | None) -> Scores:
    """Score hypotheses against references (same length, same order) for one language."""
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    code = language_code(language)
    if not references:
        return Scores(code)
    raw_words, raw_chars = _measure(references, hypotheses)
    words, _ = _measure([normalize(t, code) for t in references], [normalize(t, code) for t in hypotheses])
    _, chars = _measure([normalize_for_cer(t, code) for t in references],
                        [normalize_for_cer(t, code) for t in hypotheses])
    return Scores(code, len(references), raw_words, raw_chars, words, chars)


def utterance_errors(reference: str, hypothesis: str, language: str | None) -> Scores:
    """Scores of one pair; summing these over a corpus gives error_rates of the corpus."""
    return error_rates([reference], [hypothesis], language)
