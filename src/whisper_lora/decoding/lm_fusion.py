"""Shallow fusion of a word n-gram language model into transformers' beam (or greedy) search.

Whisper writes sub-word tokens; the language model scores words. A word is scored when it is
complete, that is when the next token starts something else (a space, punctuation, a timestamp
or the end): every such token of a row gets the row's same bonus, so the fusion is one vector
add per step, over the whole vocabulary, and changes no candidate that continues the word.

    score(token) = log p_whisper(token) + weight * ln(10) * log10 P_lm(word | words before) + bonus

for tokens that end a word (and P_lm(</s> | ...) as well for the end token). `bonus` per word
offsets the language model's cost of every word, which would otherwise favour short outputs
(the alpha and beta of DeepSpeech, NeMo and Whisper-LM). The words are the window's own, after
<s>: the prompt and earlier windows are not context.

A glossary term in a row's prompt (the second pass of --glossary) is never scored below 0: the
glossary's terms are mostly words the user's text never held, and the language model would
otherwise argue against each of them as an unknown word.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from ..data.lm import LN10, NgramLM, words

JOINERS = "'’-"  # inside a word ("zo'n", "zee-egel"): they do not end it


def _ends_word(token: str) -> bool:
    """Whether a byte-level BPE token (GPT-2's byte-to-unicode spelling) starts with something
    that ends the word before it: whitespace or ASCII punctuation. Bytes of non-ASCII letters
    (é, ü) continue it."""
    first = token[0]
    if first in "ĠĊĉ":  # the mapped space, newline and tab bytes
        return True
    if ord(first) < 128:
        return not (first.isalnum() or first in JOINERS or first == "_")
    return False


def split_partial(text: str) -> tuple[str, str]:
    """(the text before its last, unfinished word; that word)."""
    end = len(text)
    while end and (text[end - 1].isalnum() or text[end - 1] in JOINERS):
        end -= 1
    return text[:end], text[end:]


def word_ends(tokenizer, eos: int, vocab_size: int) -> torch.Tensor:
    """1.0 for each token that ends the word before it, else 0.0 (over the vocabulary): built
    once per model, since it reads every token's spelling."""
    ends = torch.zeros(vocab_size)
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocab_size)))):
        if token_id >= eos or (token and _ends_word(token)):
            ends[token_id] = 1.0  # special tokens and timestamps end the word too
    return ends


class LMFusion(LogitsProcessor):
    """Adds the language model's score of each word completed by a candidate token (see module)."""

    def __init__(self, lm: NgramLM, tokenizer, weight: float, bonus: float, prompt_length: int, eos: int,
                 ends: torch.Tensor, listed=None, beams: int = 1):
        """ends: word_ends(...) of the model; listed: per batch item, its prompt's glossary terms
        (or None); rows of input_ids are items times beams, in item order as generate lays them out."""
        self.lm, self.tokenizer, self.eos, self.ends = lm, tokenizer, eos, ends
        self.listed = [frozenset(w for term in item or () for w in words(term)) for item in listed] if listed else None
        self.beams = beams
        self.weight, self.bonus, self.prompt_length = weight * LN10, bonus, prompt_length
        self._memo: dict[tuple, tuple[float, float]] = {}

    def _add_words(self, history: tuple, new: list[str], listed: frozenset) -> tuple[float, tuple]:
        """(what the words `new` after `history` add, the history with them)."""
        added = 0.0
        for word in new:
            score = self.weight * self.lm.logprob(history, word) + self.bonus
            added += max(score, 0.0) if word in listed else score
            history += (word,)
        return added, history

    def _costs(self, tokens: tuple, listed: frozenset = frozenset()) -> tuple[float, float]:
        """(what ending the current word adds, what ending the text there adds besides)."""
        found = self._memo.get((tokens, listed))
        if found is None:
            text = self.tokenizer.decode([t for t in tokens if t < self.eos])
            done, partial = split_partial(text)
            added, history = self._add_words(tuple(words(done)), words(partial), listed)
            found = (added, self.weight * self.lm.end(history))
            self._memo[(tokens, listed)] = found
        return found

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = [self._costs(tuple(row), self._listed(i // self.beams))
                for i, row in enumerate(input_ids[:, self.prompt_length:].tolist())]
        word = torch.tensor([r[0] for r in rows], dtype=scores.dtype, device=scores.device)
        end = torch.tensor([r[1] for r in rows], dtype=scores.dtype, device=scores.device)
        if self.ends.device != scores.device or self.ends.dtype != scores.dtype:
            self.ends = self.ends.to(scores.device, scores.dtype)
        scores = scores + word[:, None] * self.ends[None, : scores.shape[-1]]
        scores[:, self.eos] += end
        return scores

    def _listed(self, item: int) -> frozenset:
        return self.listed[item] if self.listed else frozenset()

    def total(self, tokens: list[int], item: int = 0) -> float:
        """All the language model added to batch item `item`'s finished row (tokens after the
        prompt, end included): taken off its beam score to give the acoustic mean log-probability
        the fallback checks."""
        text = self.tokenizer.decode([t for t in tokens if t < self.eos])
        added, history = self._add_words((), words(text), self._listed(item))
        return added + (self.weight * self.lm.end(history) if self.eos in tokens else 0.0)
