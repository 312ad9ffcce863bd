"""transformers' generate on Whisper without the copies that made it slow on a CPU.

Every file's decoder attends to its encoder output through the cross-attention keys and values
of each layer (two projections of 1,500 positions). Here they are computed once per file
(cross_cache) and serve the first step (language, no-speech) and the whole search; generate
would compute them again, and for every beam. Three more copies are avoided:
  - beam search: after every step generate reorders the whole cache along the chosen beams, the
    cross-attention part included. Beams are only ever chosen from the same file's beams, so
    that part would stay as it was: only the self-attention cache is reordered (measured on base,
    16 Dutch clips, beam 5, 2 cores: that index_select was half of the decoding time);
  - beam search: the beams of a file attend to one copy of its keys and values, not to one copy
    each: their queries are stacked as positions of one query (shared_attention), which is the
    same arithmetic on a fifth of the memory traffic;
  - generate splits its output cache per file and stacks it again before returning it (for
    callers that continue from it); we never do, so it is dropped first (no_output_cache).
lean_generate also hands generate the timestamp rules written for whole batches
(hf_logits.Timestamps) in place of transformers' row-by-row processor.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from .hf_logits import Timestamps

SHARED = "whisper_lora_shared_kv"


def cross_cache(whisper, encoder_hidden: torch.Tensor) -> DynamicCache:
    """Each file's cross-attention keys and values, from the layers' own k_proj/v_proj (LoRA included)."""
    cross = DynamicCache(config=whisper.config)
    for index, layer in enumerate(whisper.model.decoder.layers):
        attn = layer.encoder_attn
        shape = (encoder_hidden.shape[0], -1, attn.num_heads, attn.head_dim)
        cross.update(attn.k_proj(encoder_hidden).view(shape).transpose(1, 2).contiguous(),
                     attn.v_proj(encoder_hidden).view(shape).transpose(1, 2).contiguous(), index)
    return cross


def decoder_cache(whisper, cross: DynamicCache, beams: int = 1) -> EncoderDecoderCache:
    """A fresh self-attention cache beside the filled cross-attention one (marked as done, so the
    decoder reads it and does not compute it). One cross cache serves several of these. For beam
    search outside lean_generate's shared attention (a model loaded with another attention than
    SDPA), each file's rows are repeated for its beams, as generate orders them."""
    if beams > 1 and whisper.config._attn_implementation != SHARED:
        repeated = DynamicCache(config=whisper.config)
        for index, layer in enumerate(cross.layers):
            repeated.update(layer.keys.repeat_interleave(beams, dim=0), layer.values.repeat_interleave(beams, dim=0),
                            index)
        cross = repeated
    return EncoderDecoderCache(DynamicCache(config=whisper.config), cross)


def shared_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA, where the query has `beams` rows per key row (a file's beams against its one copy of
    the encoder's keys/values): those rows are attended as one row with beams x positions."""
    rows, files = query.shape[0], key.shape[0]
    if rows == files or rows % files:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    beams, heads, length, dim = rows // files, query.shape[1], query.shape[2], query.shape[3]
    stacked = query.view(files, beams, heads, length, dim).transpose(1, 2).reshape(files, heads, beams * length, dim)
    # no mask: Whisper's cross-attention has none; is_causal False: every beam sees every position
    out, _ = sdpa_attention_forward(module, stacked, key, value, None, is_causal=False, **kwargs)
    # out: (files, beams x length, heads, dim) -> (files x beams, length, heads, dim)
    return out.view(files, beams, length, heads, dim).reshape(rows, length, heads, dim), None


AttentionInterface.register(SHARED, shared_attention)


def _reorder_self_attention(cache, beam_idx):
    cache.self_attention_cache.reorder_cache(beam_idx)
    return cache


def _instance_override(whisper, name: str, value):
    """Set an instance attribute for a block (generate looks for a model's own methods first);
    the model is as it was afterwards."""
    had, previous = name in vars(whisper), vars(whisper).get(name)
    setattr(whisper, name, value)
    return lambda: setattr(whisper, name, previous) if had else delattr(whisper, name)


@contextlib.contextmanager
def lean_generate(whisper, beams: int = 1):
    """generate() inside this block reorders only the self-attention cache, returns no cache,
    applies the timestamp rules batch-wise and, for beams > 1, lets a file's beams share their
    cross-attention keys and values."""
    original, processors = whisper._postprocess_outputs, whisper._retrieve_logit_processors

    def no_output_cache(seek_outputs, **kwargs):
        if not isinstance(seek_outputs, torch.Tensor) and seek_outputs.get("cache") is not None:
            seek_outputs = type(seek_outputs)(**{k: v for k, v in seek_outputs.items() if k != "cache"})
        return original(seek_outputs=seek_outputs, **kwargs)

    def batch_timestamp_rules(*args, **kwargs):
        return [Timestamps.like(p) if type(p) is WhisperTimeStampLogitsProcessor else p
                for p in processors(*args, **kwargs) or []] or None

    undo = [_instance_override(whisper, "_reorder_cache", _reorder_self_attention),
            _instance_override(whisper, "_postprocess_outputs", no_output_cache),
            _instance_override(whisper, "_retrieve_logit_processors", batch_timestamp_rules)]
    attention = whisper.config._attn_implementation
    if beams > 1 and attention == "sdpa":
        whisper.config._attn_implementation = SHARED
    try:
        yield
    finally:
        whisper.config._attn_implementation = attention
        for step in reversed(undo):
            step()
