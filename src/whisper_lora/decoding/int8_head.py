"""Whisper's output projection (proj_out) as int8 for decoding on a CPU.

proj_out maps each decoder state to 51,864 vocabulary logits: its weight (hidden size x
vocabulary, 80 MB in fp32 for tiny) is read in full at every decoding step, so on a CPU the step
waits on memory. Held as int8 with one scale per vocabulary row, it is read four times faster and
multiplied by fbgemm's dynamic-quantization kernel: measured on tiny.en, a quarter of a decoder
step at batch 16, with no loss of accuracy on the demo's test sets (benchmarks/RESULTS.md).
Only the head is quantized: int8 attention and feed-forward layers in the decoder cost accuracy.

The kernel comes from torch's quantized operators, which torch marks as deprecated. Where they
are missing or fail a check, decoding keeps the fp32 head.
"""

from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)

# Self-check on random inputs: |int8 - fp32| / |fp32| over all logits. tiny.en gives 0.04 (inputs
# are rounded to 8 bits too); a kernel that does not work gives 1 or more.
MAX_RELATIVE_ERROR = 0.1


class Int8Head(torch.nn.Module):
    """y = x @ weight.T (+ bias), with weight rounded to int8 per output row."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = weight.detach().float().cpu()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice of quantized tensors
            qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(
                qweight, None if bias is None else bias.detach().float().cpu())
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float().contiguous()
        y = torch.ops.quantized.linear_dynamic(flat, self._packed, True)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def build_int8_head(linear: torch.nn.Linear) -> Int8Head | None:
    """An Int8Head for this fp32 CPU layer, or None (keep fp32) where torch cannot make a good one."""
    try:
        head = Int8Head(linear.weight, linear.bias)
        probe = torch.randn(4, linear.in_features, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = linear(probe.to(linear.weight.dtype)).float()
            error = (head(probe) - want).norm() / want.norm()
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        log.info("int8 output head unavailable in this torch (%s); decoding with the fp32 head", exc)
        return None
    if not error <= MAX_RELATIVE_ERROR:
        log.info("int8 output head off: %.1f%% error on the self-check", float(error) * 100)
        return None
    return head
