"""A tiny random-init Whisper with the real tokenizer and generation config, for fast tests.

Random weights produce gibberish, but every code path (features, labels, LoRA, generate,
save/load) is the real one, and a training step takes milliseconds."""

from __future__ import annotations

import json


def tiny_random_model(multilingual: bool = False, seed: int = 0, d_model: int = 64, layers: int = 2,
                      num_mel_bins: int | None = None):
    """Return (model, processor): 2+2 layers, d_model 64, real vocabulary of tiny.en or base.
    num_mel_bins=128 gives large-v3's input (its feature extractor too); None: the real model's 80."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from . import resolve_hf_folder

    real = resolve_hf_folder("bundled:base" if multilingual else "bundled:tiny.en")
    processor = WhisperProcessor.from_pretrained(real)
    big = WhisperConfig.from_pretrained(real)
    n_mels = num_mel_bins or big.num_mel_bins
    if n_mels != processor.feature_extractor.feature_size:
        from transformers import WhisperFeatureExtractor

        processor.feature_extractor = WhisperFeatureExtractor(feature_size=n_mels)
    config = WhisperConfig(
        vocab_size=big.vocab_size, num_mel_bins=n_mels, d_model=d_model,
        encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model,
        max_source_positions=big.max_source_positions, max_target_positions=big.max_target_positions,
        bos_token_id=big.bos_token_id, eos_token_id=big.eos_token_id, pad_token_id=big.pad_token_id,
        decoder_start_token_id=big.decoder_start_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig.from_pretrained(real)
    model.generation_config.alignment_heads = [[layers - 1, h] for h in range(4)]
    model.eval()
    return model, processor


# WhisperConfig values of openai/whisper-large-v3 and openai/whisper-large-v3-turbo (their config.json
# on the hub): 128 mel bins, 100 languages; turbo keeps the encoder and has 4 decoder layers, not 32.
LARGE_V3 = dict(vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32, decoder_layers=32,
                encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120,
                max_source_positions=1500, max_target_positions=448)
LARGE_V3_TURBO = {**LARGE_V3, "decoder_layers": 4}


def random_model(shape: dict, seed: int = 0, **changes):
    """(model, processor): a random-init Whisper of `shape` (a dict of WhisperConfig values such
    as LARGE_V3) with `changes` applied (d_model=64, encoder_layers=2, ... for a tiny one), and the
    tokenizer, feature extractor and generation config an openai checkpoint of that vocabulary and
    mel count converts to (models/vocabulary.py; needs the offline extra)."""
    import tempfile
    from pathlib import Path

    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from .openai_heads import default_alignment_heads, openai_alignment_heads
    from .processor import build_processor, generation_config, token_facts
    from .vocabulary import tokenizer_folder

    values = {**shape, **changes}
    with tempfile.TemporaryDirectory(prefix="whisper-vocab-") as scratch:
        folder = tokenizer_folder(values["vocab_size"], Path(scratch))
        ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        layers, heads = values["decoder_layers"], values["decoder_attention_heads"]
        ct2_config["alignment_heads"] = (openai_alignment_heads(values["vocab_size"], values["encoder_layers"],
                                                                layers, values["d_model"], heads)
                                         or default_alignment_heads(layers, heads))
        tokens = token_facts(folder, ct2_config, vocab_size=values["vocab_size"])
        processor = build_processor(folder, values["num_mel_bins"])
    end = tokens["<|endoftext|>"]
    config = WhisperConfig(**values, bos_token_id=end, eos_token_id=end, pad_token_id=end,
                           decoder_start_token_id=tokens["<|startoftranscript|>"], tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config(config, tokens)
    model.eval()
    return model, processor


def save_openai_checkpoint(model, path) -> None:
    """Write model as openai-whisper's `.pt` does: {"dims", "model_state_dict"} with openai's names
    (the tied output projection is the token embedding there, so it is not written)."""
    import torch

    from .names import openai_name

    c = model.config
    dims = dict(n_mels=c.num_mel_bins, n_vocab=c.vocab_size, n_audio_ctx=c.max_source_positions,
                n_audio_state=c.d_model, n_audio_head=c.encoder_attention_heads, n_audio_layer=c.encoder_layers,
                n_text_ctx=c.max_target_positions, n_text_state=c.d_model, n_text_head=c.decoder_attention_heads,
                n_text_layer=c.decoder_layers)
    state = {openai_name(k): v.detach().clone() for k, v in model.state_dict().items() if k != "proj_out.weight"}
    torch.save({"dims": dims, "model_state_dict": state}, path)
