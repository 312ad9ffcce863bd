"""Encoder outputs of the training clips, computed once per clip when the encoder is frozen.

Whisper's encoder always reads a 30-second window, so for the usual 2-10 s training clip it is
most of a training step's arithmetic. With --freeze_encoder its weights never change, so each
clip's output is the same in every epoch: the first epoch computes it (without a backward pass),
later epochs look it up and only the decoder runs. Items must be deterministic per index
(SpeechDataset's are, joined timestamp items included).

The cache is bounded (a share of the machine's memory); clips beyond the bound are encoded each
time they come, still without the backward pass through the encoder."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

MAX_BYTES = 8 << 30  # never more than this, whatever the machine
MEMORY_SHARE = 8  # at most 1/8 of the machine's memory


def default_budget() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        total = 16 << 30
    return min(MAX_BYTES, total // MEMORY_SHARE)


class EncoderCache:
    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = default_budget() if max_bytes is None else max_bytes
        self.stored: dict[int, "object"] = {}  # dataset index -> encoder output (cpu tensor)
        self.bytes = 0
        self.full_reported = False

    def __call__(self, encoder, features, indices: list[int]):
        """Encoder output for a batch: cached rows looked up, the others computed (and kept while
        the budget lasts). `encoder` is the frozen WhisperEncoder; no gradient flows into it."""
        import torch

        missing = [j for j, i in enumerate(indices) if i not in self.stored]
        computed = {}
        if missing:
            with torch.no_grad():
                hidden = encoder(features[missing]).last_hidden_state
            for j, h in zip(missing, hidden):
                computed[j] = h
                self._keep(indices[j], h)
        rows = [computed[j] if j in computed else self.stored[i].to(features.device, non_blocking=True)
                for j, i in enumerate(indices)]
        return torch.stack(rows)

    def _keep(self, index: int, hidden) -> None:
        size = hidden.numel() * hidden.element_size()
        if self.bytes + size > self.max_bytes:
            if not self.full_reported:
                log.info("encoder cache full at %d clips (%.1f GB): the rest are encoded every epoch",
                         len(self.stored), self.bytes / 1e9)
                self.full_reported = True
            return
        self.stored[index] = hidden.detach().to("cpu", copy=True)
        self.bytes += size
