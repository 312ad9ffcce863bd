"""Convert an openai-whisper `.pt` checkpoint (as `whisper.load_model` downloads) to HF.

The checkpoint holds `dims` and `model_state_dict` only, no tokenizer: the tokenizer and
suppress lists come from the bundled model of the same vocabulary (English-only, multilingual,
or large-v3's with Cantonese: vocabulary.py), and the alignment heads from openai's table for a
released model's shape (openai_heads.py), else openai's default for a model without its own
(the upper half of the decoder layers, all heads). The mel bins (80, or 128 for large-v3 and
turbo) are the checkpoint's n_mels."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .cache import cached_conversion, weights_key
from .names import hf_name
from .openai_heads import default_alignment_heads, openai_alignment_heads
from .processor import assemble, build_processor, token_facts
from .vocabulary import tokenizer_folder
from ..errors import ModelLoadError

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


def convert_openai_checkpoint(path: Path, out: Path) -> None:
    """Convert the checkpoint at path into an HF folder (save_pretrained layout) at out."""
    from transformers import WhisperConfig

    dims, state = load_openai_checkpoint(path)
    n_vocab = dims["n_vocab"]
    with tempfile.TemporaryDirectory(prefix="whisper-vocab-") as scratch:
        tok_folder = tokenizer_folder(n_vocab, Path(scratch), source=str(path))
        ct2_config = json.loads((tok_folder / "config.json").read_text(encoding="utf-8"))
        n_layers, n_heads = dims["n_text_layer"], dims["n_text_head"]
        ct2_config["alignment_heads"] = (
            openai_alignment_heads(n_vocab, dims["n_audio_layer"], n_layers, dims["n_text_state"], n_heads)
            or default_alignment_heads(n_layers, n_heads))
        tokens = token_facts(tok_folder, ct2_config, vocab_size=n_vocab)
        processor = build_processor(tok_folder, dims["n_mels"])
    eot, sot = tokens["<|endoftext|>"], tokens["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=n_vocab, num_mel_bins=dims["n_mels"], d_model=dims["n_audio_state"],
        encoder_layers=dims["n_audio_layer"], decoder_layers=n_layers,
        encoder_attention_heads=dims["n_audio_head"], decoder_attention_heads=n_heads,
        encoder_ffn_dim=4 * dims["n_audio_state"], decoder_ffn_dim=4 * dims["n_text_state"],
        max_source_positions=dims["n_audio_ctx"], max_target_positions=dims["n_text_ctx"],
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=None, begin_suppress_tokens=None, tie_word_embeddings=True)
    model = assemble(config, state, tokens, path)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def hf_folder(path: Path, cache: Path) -> Path:
    """The HF folder converted from the checkpoint, converting on first use (cached by its bytes)."""
    return cached_conversion("pt-" + weights_key(path.read_bytes()), cache,
                             lambda out: convert_openai_checkpoint(path, out))
