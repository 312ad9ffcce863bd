"""Glossary-aware training: some training clips get a prompt that lists terms, the way a
glossary prompts decoding (decoding/biasing.py), so the model learns to copy a listed word it hears and
to pass over the listed words it does not.

A prompted clip's list holds 0-3 of its own rarer words (words of at least MIN_TERM_CHARS
letters that at most RARE_DOCUMENTS training transcripts contain, and the --glossary terms its
transcript holds) and 1-7 distractors (--glossary terms, else other transcripts' rarer words,
none of them in its own transcript), shuffled. A quarter of the prompted clips get no own word,
so a list is not a promise. The prompt is written as decoding writes it (glossary.prompt_text)
and carries no loss (dataset.Collator.with_prompts). Validation clips get none.
"""

from __future__ import annotations

import random
from collections import Counter

from ..data.glossary import MAX_TERMS, MIN_TERM_CHARS, Glossary, normalize, surface_words

RARE_DOCUMENTS = 2  # a word in at most this many training transcripts is rare: a term to list
MAX_OWN = 3
NO_OWN_SHARE = 0.25  # prompted clips whose list holds none of their words
DISTRACTORS = (1, 7)  # fewest and most distractors in a list


class PromptTerms:
    """prompt_terms(i, draw) -> the terms of training row i's prompt at its draw-th read, or None."""

    def __init__(self, texts: list[str], share: float, seed: int, glossary: Glossary | None = None):
        self.texts, self.share, self.seed, self.glossary = texts, share, seed, glossary
        documents = Counter(w for t in texts for w in set(normalize(t).split()))
        self.rare = [[w for w in dict.fromkeys(surface_words(t)) if len(w) >= MIN_TERM_CHARS
                      and documents[normalize(w)] <= RARE_DOCUMENTS] for t in texts]
        self.pool = list(glossary.terms) if glossary else sorted({w for words in self.rare for w in words})

    def __call__(self, i: int, draw: int = 0) -> list[str] | None:
        rng = random.Random(f"{self.seed}|prompt|{i}|{draw}")
        if self.share <= 0 or rng.random() >= self.share or not self.pool:
            return None
        said = f" {normalize(self.texts[i])} "
        own = list(self.rare[i])
        if self.glossary is not None:
            own += [t for t, key in zip(self.glossary.terms, self.glossary.keys()) if key and f" {key} " in said
                    and t not in own]
        k = 0 if not own or rng.random() < NO_OWN_SHARE else rng.randint(1, min(MAX_OWN, len(own)))
        terms = rng.sample(own, k)
        wanted = rng.randint(*DISTRACTORS)
        for _ in range(4 * wanted):  # draws that fall in the clip's own words are skipped
            if len(terms) >= k + wanted:
                break
            term = rng.choice(self.pool)
            if f" {normalize(term)} " not in said and term not in terms:
                terms.append(term)
        rng.shuffle(terms)
        return terms or None


def merge(lists: list[list[str] | None], limit: int = MAX_TERMS) -> list[str] | None:
    """One prompt for clips packed into a window: each clip's first term, then each one's second...,
    at most `limit` (a decoded file's prompt holds at most MAX_TERMS); None if no clip has one."""
    lists = [t for t in lists if t]
    if not lists:
        return None
    out: list[str] = []
    for rank in range(max(map(len, lists))):
        out += [t[rank] for t in lists if rank < len(t) and t[rank] not in out]
    return out[:limit]
