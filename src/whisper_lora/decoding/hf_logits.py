"""What transformers' generate is given beside the model: Whisper's token suppression, the
log-probability of each chosen token, and a filter for the warnings it prints about choices
made here on purpose."""

from __future__ import annotations

import logging

import torch
from transformers import LogitsProcessor
from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

# transformers' generate warns about choices made here on purpose: suppress lists passed beside
# the generation config (ours replace its lists), max_new_tokens beside the config's max_length
# (the cap wins, as meant), no attention mask on the decoder prompt (Whisper's prompts are
# never padded), and output_scores on the inner config Whisper's beam search builds (the beam
# scores are read, and they come back). Users would read them as problems of theirs.
GENERATE_NOISE = ("Passing `generation_config` together with", "seem to have been set",
                  "The attention mask is not set with a batched input",
                  "flags are not valid and may be ignored: ['output_scores']")
NOISY_LOGGERS = ("transformers.generation.utils", "transformers.generation.configuration_utils")


class GenerateNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(noise in message for noise in GENERATE_NOISE)


def quiet_generate_warnings() -> None:
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, GenerateNoise) for f in logger.filters):
            logger.addFilter(GenerateNoise())


class Suppress(LogitsProcessor):
    """Whisper's suppressed tokens (at every step, or only at the first step: begin_index).

    Replaces transformers' SuppressTokens / SuppressTokensAtBegin processors, which rebuild the
    mask with torch.isin over the whole vocabulary at every step: measured here, that cost as
    much as a decoder step of tiny.en. The suppressed columns are listed once."""

    def __init__(self, tokens, vocab_size: int, begin_index: int | None = None):
        # the columns to fill, not a vocabulary-wide mask: a masked_fill over every row and token
        # cost 5 ms a step at beam 5 over 8 windows, filling the ~90 columns a twentieth of that
        self.columns = torch.tensor(sorted({t for t in tokens if 0 <= t < vocab_size}), dtype=torch.long)
        self.begin_index = begin_index

    def set_begin_index(self, begin_index: int) -> None:  # called by Whisper's long-form loop
        if self.begin_index is not None:
            self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.begin_index is not None and input_ids.shape[-1] != self.begin_index:
            return scores
        if self.columns.device != scores.device:
            self.columns = self.columns.to(scores.device)
        return scores.index_fill(1, self.columns[self.columns < scores.shape[-1]], float("-inf"))


class TokenLogprobs(LogitsProcessor):
    """Sums the log-probability of each chosen token during greedy decoding, without keeping
    the per-step scores (batch x steps x 51k floats) that output_scores would hold.

    At step t it scores the token chosen at step t-1 (now the last input id) against the
    log-softmax it saved at t-1; the token chosen at the final step is scored in `finish`."""

    def __init__(self, eos_token_id: int, prompt_length: int):
        self.eos = eos_token_id
        self.prompt_length = prompt_length
        self.prev: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.done: torch.Tensor | None = None

    def _add(self, tokens: torch.Tensor) -> None:
        live = ~self.done
        picked = self.prev.gather(1, tokens[:, None]).squeeze(1)
        self.total += torch.where(live, picked, torch.zeros_like(picked))
        self.count += live.long()
        self.done |= tokens == self.eos  # the end token itself counts, as in openai-whisper

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.total is None:
            batch = input_ids.shape[0]
            self.total = torch.zeros(batch, dtype=torch.float32, device=scores.device)
            self.count = torch.zeros(batch, dtype=torch.long, device=scores.device)
            self.done = torch.zeros(batch, dtype=torch.bool, device=scores.device)
        elif input_ids.shape[1] > self.prompt_length:
            self._add(input_ids[:, -1])
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """Mean log-probability per row; sequences are the full generated rows."""
        if self.total is None:
            return torch.zeros(sequences.shape[0])
        if sequences.shape[1] > self.prompt_length and self.prev is not None:
            self._add(sequences[:, -1].to(self.prev.device))
        return (self.total / self.count.clamp(min=1)).cpu()


class Timestamps(WhisperTimeStampLogitsProcessor):
    """Whisper's timestamp rules (openai-whisper's ApplyTimestampRules), as transformers' processor
    applies them, for all rows at once.

    transformers' own walks the rows in Python and takes a log-softmax over the whole vocabulary
    at every step, to ask whether the timestamps together are likelier than the best text token:
    measured on beam 5 over 8 windows, 15 ms of a 40-ms step. The same question is asked of the
    logits (both sides of it share the softmax's normaliser), and the rules are tensor operations."""

    @classmethod
    def like(cls, other: WhisperTimeStampLogitsProcessor) -> "Timestamps":
        new = cls.__new__(cls)
        new.__dict__.update(other.__dict__)
        return new

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        begin, ts = self.begin_index, self.timestamp_begin
        scores = scores.clone()
        scores[:, self.no_timestamps_token_id] = -float("inf")  # timestamps are asked for
        seq = input_ids[:, begin:]
        rows, length = seq.shape
        if length:
            last = seq[:, -1] >= ts
            before = seq[:, -2] >= ts if length >= 2 else torch.ones_like(last)
            # timestamps come in pairs, except just before the end: after a pair, text; after one, a timestamp or the end
            scores[last & before, ts:] = -float("inf")
            scores[last & ~before, :self.eos_token_id] = -float("inf")
            # timestamps never go back, and none is repeated but the one that closes a pair
            is_ts = seq >= ts
            where = torch.where(is_ts, torch.arange(length, device=seq.device), -1).amax(-1)
            latest = seq.gather(1, where.clamp(min=0)[:, None])[:, 0]
            floor = torch.where(where < 0, torch.full_like(latest, ts),
                                torch.where(last & ~before, latest, latest + 1))
        else:
            floor = torch.full((rows,), ts, device=scores.device)
        stamps = torch.arange(scores.shape[-1] - ts, device=scores.device)
        scores[:, ts:].masked_fill_(stamps < (floor - ts)[:, None], -float("inf"))
        if input_ids.shape[1] == begin:  # the first token is a timestamp, at most max_initial_timestamp
            scores[:, :ts] = -float("inf")
            if self.max_initial_timestamp_index is not None:
                scores[:, ts + self.max_initial_timestamp_index + 1:] = -float("inf")
        if self._detect_timestamp_from_logprob:
            logits = scores.float()
            likelier = logits[:, ts:].logsumexp(-1) > logits[:, :ts].amax(-1)
            scores[:, :ts].masked_fill_(likelier[:, None], -float("inf"))
        return scores
