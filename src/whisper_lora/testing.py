"""A tiny random-init Whisper with the real tokenizer and generation config, for fast tests.

Random weights produce gibberish, but every code path (features, labels, LoRA, generate,
save/load) is the real one, and a training step takes milliseconds."""

from __future__ import annotations


def tiny_random_model(multilingual: bool = False, seed: int = 0, d_model: int = 64, layers: int = 2,
                      num_mel_bins: int | None = None):
    """Return (model, processor): 2+2 layers, d_model 64, real vocabulary of tiny.en or base.
    num_mel_bins=128 gives large-v3's input (its feature extractor too); None: the real model's 80."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from .models import resolve_hf_folder

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
