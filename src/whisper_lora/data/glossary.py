"""Glossaries: the domain terms a user lists (product names, people, places, jargon), read,
checked, and chosen per file for Whisper's prompt.

Whisper's prompt (<|startofprev|> text, before <|startoftranscript|>) holds at most half the
decoder's 448 positions, 223 tokens: a glossary of thousands of terms does not fit, and a long
list of unrelated words only distracts the model. So each file (or 30-s window) gets the few
terms it probably holds: its first-pass transcript is matched against the glossary by spelling
and by sound (`select`, `sound_key`), and the terms that come close to a word, a pair of words or
a pair written as one (compounds the model split) are put in the prompt of a second pass.

The prompt is the terms joined by ", " (`prompt_text`): the same format in decoding and in
glossary-aware training (training/prompt_terms.py), so a model trained with prompts reads them the
same way at inference.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionsError

PROMPT_TOKENS = 448 // 2 - 1  # the decoder's 448 positions, half for the prompt, less <|startofprev|>
SEPARATOR = ", "  # between the terms of a prompt
# Terms put in one file's prompt, best match first. A file of a few seconds says few rare words;
# more candidates raise the chance that one the model copies was not said (measured on the
# Dutch set: benchmarks/glossary.py, RESULTS.md).
MAX_TERMS = 8
# Similarity (rapidfuzz's normalized Indel ratio, 0-100, the higher of the spellings' and the
# sound keys') from which a term counts as heard: "zeewier" for "zeewieren" 88, "Kwintus" for
# "Quintus" 71 spelt and 100 as sound keys. Short terms come close to common words by chance, so
# they need more, and the shortest are never chosen. Chosen on the Dutch set (benchmarks/glossary.py,
# the defaults adapter's first pass, 1,350 terms): of the 218 held-out words the first pass got
# wrong, 75/85 on spellings put 72 in a prompt (183 files); with sound keys 85 (250 files, WER
# 29.4% after splicing); 70/80 with sound keys 100 (279 files, 29.2%, twice the wrong terms).
MIN_SCORE = 75.0  # terms of LONG_TERM_CHARS letters or more
MIN_SHORT_SCORE = 85.0  # terms of MIN_TERM_CHARS to LONG_TERM_CHARS - 1 letters
LONG_TERM_CHARS = 8
MIN_TERM_CHARS = 5  # shorter terms come close to too many words by chance: never selected
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
# A model that never heard a name writes it as it sounds ("Kwintus" for "Quintus", "Seilon" for
# "Ceylon"), so terms are also compared as sound keys: accents dropped, spellings that sound the
# same rewritten to one (each rule in order over the whole word), doubled letters made single.
# The common rules hold across Latin-script languages; a language's own digraphs go before them
# (Dutch "ch" before "c") and its letters that merge in speech after (Dutch "w" after "qu" -> "kw").
_COMMON_SOUNDS = (("ph", "f"), ("th", "t"), ("ck", "k"), ("qu", "kw"), ("ce", "se"), ("ci", "si"), ("c", "k"),
                  ("x", "ks"), ("y", "i"), ("z", "s"), ("dt", "t"))
SOUND_RULES = {
    "": _COMMON_SOUNDS,
    "nl": (("sch", "s"), ("ch", "g"), ("ij", "ei"), ("ou", "au"), ("ie", "i"), ("oe", "u"), *_COMMON_SOUNDS,
           ("v", "f"), ("w", "v"), ("h", "")),
    "de": (("sch", "s"), ("ch", "g"), ("ei", "ai"), ("ie", "i"), *_COMMON_SOUNDS, ("v", "f"), ("w", "v"), ("h", "")),
}
_DOUBLED = re.compile(r"(.)\1+")


class GlossaryError(OptionsError):
    """A glossary that cannot be used: missing, not UTF-8, empty, or a term too long for a prompt."""


def normalize(text: str) -> str:
    """Lower case, NFC, words only (punctuation between words becomes one space)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFC", text).casefold()))


def surface_words(text: str) -> list[str]:
    """The words of `text` as written (case kept, NFC), punctuation around them left out."""
    return _WORD.findall(unicodedata.normalize("NFC", text))


def sound_key(text: str, language: str | None = None) -> str:
    """`text` (normalized) as it sounds, for comparing spellings: see SOUND_RULES."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    for a, b in SOUND_RULES.get((language or "").split("-")[0], SOUND_RULES[""]):
        text = text.replace(a, b)
    return _DOUBLED.sub(r"\1", text)


@dataclass(frozen=True)
class Glossary:
    """Terms in the order given (duplicates dropped), with the line each came from."""

    terms: tuple[str, ...]
    lines: tuple[int, ...]  # 1-based line of each term in its file (or index in the list given)
    source: str  # the file, or the request field, named in errors

    @classmethod
    def read(cls, path: str | os.PathLike, flag: str = "--glossary") -> "Glossary":
        """One term per line, UTF-8; blank lines and lines starting with # are skipped."""
        path = Path(path).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise GlossaryError(f"{flag} {path}: file not found") from None
        except IsADirectoryError:
            raise GlossaryError(f"{flag} {path}: is a folder; give a text file with one term per line") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise GlossaryError(f"{flag} {path}, line {line}: not UTF-8 text (byte {exc.start}); save the "
                                "file as UTF-8") from None
        entries = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        return cls.from_terms([t for _, t in entries], f"{flag} {path}", [n for n, _ in entries])

    @classmethod
    def from_terms(cls, terms, source: str, lines=None) -> "Glossary":
        """Terms from a list (a request field, a training option); blank and # entries skipped."""
        lines = list(lines) if lines is not None else list(range(1, len(terms) + 1))
        kept, kept_lines, seen = [], [], set()
        for n, term in zip(lines, terms):
            term = " ".join(str(term).split())
            if not term or term.startswith("#") or term in seen:
                continue
            seen.add(term)
            kept.append(term)
            kept_lines.append(n)
        if not kept:
            raise GlossaryError(f"{source}: no terms in it (one term per line; blank and # lines are skipped)")
        return cls(tuple(kept), tuple(kept_lines), source)

    def check_tokens(self, encode) -> None:
        """Every term fits in a prompt: encode(text) -> token ids with the model's tokenizer."""
        for term, line in zip(self.terms, self.lines):
            n = len(encode(" " + term))
            if n > PROMPT_TOKENS:
                raise GlossaryError(f"{self.source}, line {line}: the term is {n} tokens long, more than "
                                    f"Whisper's prompt holds ({PROMPT_TOKENS}); shorten it or split it in terms")

    def select(self, heard: str, limit: int = MAX_TERMS, language: str | None = None) -> list[str]:
        """The terms `heard` (a first-pass transcript in `language`) probably holds and does not
        already write, best match first, at most `limit`."""
        return [term for term, _ in self.scores(heard, language)[:limit]]

    def scores(self, heard: str, language: str | None = None) -> list[tuple[str, float]]:
        """(term, similarity) for every term close enough to some span of `heard` (MIN_SCORE,
        MIN_SHORT_SCORE), best first: the higher of the spelling's and the sound key's similarity.
        Terms `heard` already writes are left out (nothing to mend), and so are terms under
        MIN_TERM_CHARS letters: close to too many words by chance."""
        import numpy as np
        from rapidfuzz import fuzz, process

        words = normalize(heard).split()
        if not words:
            return []
        written = set(words)  # what the text writes: one, two or three words
        written |= {f"{a} {b}" for a, b in zip(words, words[1:])}
        written |= {f"{a} {b} {c}" for a, b, c in zip(words, words[1:], words[2:])}
        # and the same written as one: a compound the model split
        spans = sorted(written | {w.replace(" ", "") for w in written})
        keys, sounds = self.keys(), self.sound_keys(language)
        cutoff = min(MIN_SCORE, MIN_SHORT_SCORE)
        best = process.cdist(keys, spans, scorer=fuzz.ratio, score_cutoff=cutoff, workers=1).max(axis=1)
        heard_sounds = sorted({sound_key(w, language) for w in spans})
        best = np.maximum(best, process.cdist(sounds, heard_sounds, scorer=fuzz.ratio, score_cutoff=cutoff,
                                              workers=1).max(axis=1))
        lengths = np.array([len(k) for k in keys])
        need = np.where(lengths >= LONG_TERM_CHARS, MIN_SCORE,
                        np.where(lengths >= MIN_TERM_CHARS, MIN_SHORT_SCORE, np.inf))
        found = [(self.terms[k], float(best[k])) for k in np.nonzero(best >= need)[0] if keys[k] not in written]
        found.sort(key=lambda item: -item[1])
        return found

    def keys(self) -> list[str]:
        """Each term normalized (normalize), as matched against what was heard."""
        keys = getattr(self, "_cached_keys", None)
        if keys is None:
            keys = [normalize(t) for t in self.terms]
            object.__setattr__(self, "_cached_keys", keys)
        return keys

    def sound_keys(self, language: str | None) -> list[str]:
        """Each term's sound key (sound_key) in `language`."""
        cache = getattr(self, "_cached_sounds", None)
        if cache is None:
            cache = {}
            object.__setattr__(self, "_cached_sounds", cache)
        if language not in cache:
            cache[language] = [sound_key(k, language) for k in self.keys()]
        return cache[language]


def prompt_text(terms) -> str:
    """The prompt that lists `terms`, as decoding and glossary-aware training both write it."""
    return SEPARATOR.join(terms)
