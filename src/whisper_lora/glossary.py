"""Glossaries: the domain terms a user lists (product names, people, places, jargon), read,
checked, and chosen per file for Whisper's prompt.

Whisper's prompt (<|startofprev|> text, before <|startoftranscript|>) holds at most half the
decoder's 448 positions, 223 tokens: a glossary of thousands of terms does not fit, and a long
list of unrelated words only distracts the model. So each file (or 30-s window) gets the few
terms it probably holds: its first-pass transcript is matched against the glossary at the
spelling level (`select`), and the terms that come close to a word, a pair of words or a pair
written as one (compounds the model split) are put in the prompt of a second pass.

The prompt is the terms joined by ", " (`prompt_text`): the same format in decoding and in
glossary-aware training (training/prompts.py), so a model trained with prompts reads them the
same way at inference.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .errors import OptionsError

PROMPT_TOKENS = 448 // 2 - 1  # the decoder's 448 positions, half for the prompt, less <|startofprev|>
SEPARATOR = ", "  # between the terms of a prompt
# Terms put in one file's prompt, best match first. A file of a few seconds says few rare words;
# more candidates raise the chance that one the model copies was not said (measured on the
# Dutch set: benchmarks/glossary.py, RESULTS.md).
MAX_TERMS = 8
# Spelling similarity (rapidfuzz's normalized Indel ratio, 0-100) from which a term counts as
# heard: "Kwintus" for "Quintus" is 62, "zeewier" for "zeewieren" 88.
MIN_SCORE = 70.0
MIN_TERM_CHARS = 4  # shorter terms match too many words by chance: only an exact match selects them
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


class GlossaryError(OptionsError):
    """A glossary that cannot be used: missing, not UTF-8, empty, or a term too long for a prompt."""


def normalize(text: str) -> str:
    """Lower case, NFC, words only (punctuation between words becomes one space)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFC", text).casefold()))


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

    def select(self, heard: str, limit: int = MAX_TERMS, min_score: float = MIN_SCORE) -> list[str]:
        """The terms `heard` (a first-pass transcript) probably holds, best match first, at most `limit`."""
        return [term for term, _ in self.scores(heard, min_score)[:limit]]

    def scores(self, heard: str, min_score: float = MIN_SCORE) -> list[tuple[str, float]]:
        """(term, similarity) for every term at least min_score close to some span of `heard`."""
        from rapidfuzz import fuzz, process

        words = normalize(heard).split()
        if not words:
            return []
        spans = set(words)
        for a, b in zip(words, words[1:]):
            spans.add(f"{a} {b}")
            spans.add(a + b)  # a compound the model wrote as two words
        for a, b, c in zip(words, words[1:], words[2:]):
            spans.add(f"{a} {b} {c}")
        spans = sorted(spans)
        keys = self._keys()
        matrix = process.cdist(keys, spans, scorer=fuzz.ratio, score_cutoff=min_score, workers=1)
        best = matrix.max(axis=1)
        found = []
        for k in best.nonzero()[0]:
            key = keys[k]
            if len(key) < MIN_TERM_CHARS and key not in spans:
                continue
            found.append((self.terms[k], float(best[k])))
        found.sort(key=lambda item: -item[1])
        return found

    def _keys(self) -> list[str]:
        keys = getattr(self, "_cached_keys", None)
        if keys is None:
            keys = [normalize(t) for t in self.terms]
            object.__setattr__(self, "_cached_keys", keys)
        return keys


def prompt_text(terms) -> str:
    """The prompt that lists `terms`, as decoding and glossary-aware training both write it."""
    return SEPARATOR.join(terms)
