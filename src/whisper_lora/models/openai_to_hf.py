"""Convert an openai-whisper `.pt` checkpoint (as `whisper.load_model` downloads) to HF.

The checkpoint holds `dims` and `model_state_dict` only, no tokenizer: the tokenizer and
suppress lists come from the bundled model of the same vocabulary (English-only or multilingual)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import ModelLoadError

# openai name -> HF name, applied to the part after "encoder."/"decoder."
_RENAMES = [
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
    for pattern, repl in _RENAMES:
        rest, n = re.subn(pattern, repl, rest)
        if n:
            break
    return f"model.{side}.{rest}"


def load_openai_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (dims, HF state dict). weights_only=True: a checkpoint cannot run code on load."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip: all mean "not a usable checkpoint"
        raise ModelLoadError(f"{path}: cannot read as an openai-whisper checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ModelLoadError(f"{path}: not an openai-whisper checkpoint (expected keys 'dims' and "
                             "'model_state_dict')")
    state = {hf_name(k): v.float() for k, v in ckpt["model_state_dict"].items()}
    return ckpt["dims"], state
