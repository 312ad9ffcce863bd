"""OpenAI's alignment heads (the cross-attention heads word timestamps read) of each released
checkpoint, found by its shape.

openai-whisper keeps them out of the `.pt` files, as a table in whisper/__init__.py
(`_ALIGNMENT_HEADS`: base85 of a gzipped boolean [text layers x heads] mask per model). Below is
that table decoded into [layer, head] pairs; the HF hub's generation_config.json files hold the
same values (large-v3's and large-v3-turbo's were checked against both). A checkpoint is known by
(vocabulary size, encoder layers, decoder layers, width). large-v1 and large-v2 share theirs and
have different heads, so they get none from here (the caller's default).
"""

from __future__ import annotations

from .vocabulary import ENGLISH_VOCAB, LARGE_V3_VOCAB, MULTILINGUAL_VOCAB

# (n_vocab, n_audio_layer, n_text_layer, n_text_state) -> [[decoder layer, head], ...]
OPENAI_ALIGNMENT_HEADS = {
    (ENGLISH_VOCAB, 4, 4, 384): [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]],  # tiny.en
    (MULTILINGUAL_VOCAB, 4, 4, 384): [[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]],  # tiny
    (ENGLISH_VOCAB, 6, 6, 512): [[3, 3], [4, 7], [5, 1], [5, 5], [5, 7]],  # base.en
    (MULTILINGUAL_VOCAB, 6, 6, 512): [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]],  # base
    (ENGLISH_VOCAB, 12, 12, 768): [[6, 6], [7, 0], [7, 3], [7, 8], [8, 2], [8, 5], [8, 7], [9, 0], [9, 4], [9, 8],
                                   [9, 10], [10, 0], [10, 1], [10, 2], [10, 3], [10, 6], [10, 11], [11, 2],
                                   [11, 4]],  # small.en
    (MULTILINGUAL_VOCAB, 12, 12, 768): [[5, 3], [5, 9], [8, 0], [8, 4], [8, 7], [8, 8], [9, 0], [9, 7], [9, 9],
                                        [10, 5]],  # small
    (ENGLISH_VOCAB, 24, 24, 1024): [[11, 4], [14, 1], [14, 12], [14, 14], [15, 4], [16, 0], [16, 4], [16, 9],
                                    [17, 12], [17, 14], [18, 7], [18, 10], [18, 15], [20, 0], [20, 3], [20, 9],
                                    [20, 14], [21, 12]],  # medium.en
    (MULTILINGUAL_VOCAB, 24, 24, 1024): [[13, 15], [15, 4], [15, 15], [16, 1], [20, 0], [23, 4]],  # medium
    (LARGE_V3_VOCAB, 32, 32, 1280): [[7, 0], [10, 17], [12, 18], [13, 12], [16, 1], [17, 14], [19, 11], [21, 4],
                                     [24, 1], [25, 6]],  # large-v3
    (LARGE_V3_VOCAB, 32, 4, 1280): [[2, 4], [2, 11], [3, 3], [3, 6], [3, 11], [3, 14]],  # large-v3-turbo
}


def openai_alignment_heads(n_vocab: int, n_audio_layer: int, n_text_layer: int, n_text_state: int,
                           n_text_head: int) -> list[list[int]] | None:
    """OpenAI's heads for a checkpoint of this shape, or None when it is no released model's."""
    heads = OPENAI_ALIGNMENT_HEADS.get((n_vocab, n_audio_layer, n_text_layer, n_text_state))
    if heads is None or any(layer >= n_text_layer or head >= n_text_head for layer, head in heads):
        return None
    return [list(h) for h in heads]


def default_alignment_heads(n_text_layer: int, n_text_head: int) -> list[list[int]]:
    """openai-whisper's choice for a model without its own: every head of the upper half of the decoder."""
    return [[layer, head] for layer in range(n_text_layer // 2, n_text_layer) for head in range(n_text_head)]
