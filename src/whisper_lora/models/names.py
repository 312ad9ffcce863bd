"""openai-whisper's weight names and HF's, both ways: one table, read forwards by openai_to_hf.py
(a .pt checkpoint loaded into HF) and backwards by export/ggml.py (whisper.cpp keeps openai's names)."""

from __future__ import annotations

import functools
import re

# openai name -> HF name, applied to the part after "encoder."/"decoder."
NAME_RULES = [
    (r"^blocks\.(\d+)\.attn\.query\.", r"layers.\1.self_attn.q_proj."),
    (r"^blocks\.(\d+)\.attn\.key\.", r"layers.\1.self_attn.k_proj."),
    (r"^blocks\.(\d+)\.attn\.value\.", r"layers.\1.self_attn.v_proj."),
    (r"^blocks\.(\d+)\.attn\.out\.", r"layers.\1.self_attn.out_proj."),
    (r"^blocks\.(\d+)\.attn_ln\.", r"layers.\1.self_attn_layer_norm."),
    (r"^blocks\.(\d+)\.cross_attn\.query\.", r"layers.\1.encoder_attn.q_proj."),
    (r"^blocks\.(\d+)\.cross_attn\.key\.", r"layers.\1.encoder_attn.k_proj."),
    (r"^blocks\.(\d+)\.cross_attn\.value\.", r"layers.\1.encoder_attn.v_proj."),
    (r"^blocks\.(\d+)\.cross_attn\.out\.", r"layers.\1.encoder_attn.out_proj."),
    (r"^blocks\.(\d+)\.cross_attn_ln\.", r"layers.\1.encoder_attn_layer_norm."),
    (r"^blocks\.(\d+)\.mlp\.0\.", r"layers.\1.fc1."),
    (r"^blocks\.(\d+)\.mlp\.2\.", r"layers.\1.fc2."),
    (r"^blocks\.(\d+)\.mlp_ln\.", r"layers.\1.final_layer_norm."),
    (r"^ln_post\.", "layer_norm."),
    (r"^ln\.", "layer_norm."),
    (r"^token_embedding\.", "embed_tokens."),
    (r"^positional_embedding$", "embed_positions.weight"),
]


def hf_name(name: str) -> str:
    side, rest = name.split(".", 1)
    for pattern, repl in NAME_RULES:
        rest, n = re.subn(pattern, repl, rest)
        if n:
            break
    return f"model.{side}.{rest}"


@functools.lru_cache(maxsize=1)
def _inverse_renames():
    """NAME_RULES read backwards: (HF pattern, openai replacement) pairs. Two openai names map
    onto HF's `layer_norm.` (encoder ln_post, decoder ln); SIDE_OF says whose is whose."""
    inverse = []
    for pattern, repl in NAME_RULES:
        hf = "^" + re.escape(repl).replace(r"\\1", r"(\d+)") + ("$" if pattern.endswith("$") else "")
        openai = pattern.strip("^$").replace(r"(\d+)", r"\1").replace(r"\.", ".")
        inverse.append((hf, openai))
    return inverse


SIDE_OF = {"ln_post.": "encoder", "ln.": "decoder"}  # final layer norms: encoder.ln_post, decoder.ln


def openai_name(hf_name: str) -> str:
    """`model.encoder.layers.0.self_attn.q_proj.weight` -> `encoder.blocks.0.attn.query.weight`."""
    if not hf_name.startswith(("model.encoder.", "model.decoder.")):
        raise ValueError(f"{hf_name}: not an encoder or decoder weight")
    side, rest = hf_name.removeprefix("model.").split(".", 1)
    for pattern, repl in _inverse_renames():
        if SIDE_OF.get(repl, side) != side:
            continue
        renamed, n = re.subn(pattern, repl, rest)
        if n:
            return f"{side}.{renamed}"
    return f"{side}.{rest}"  # conv1/conv2 keep their names
