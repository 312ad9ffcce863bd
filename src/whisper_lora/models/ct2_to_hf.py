"""Turn a faster-whisper / CTranslate2 Whisper folder back into a complete HF Whisper model.

CTranslate2's converter fuses some projections; this undoes it:
- self-attention q/k/v are stacked in `self_attention/linear_0` (the k bias is zero: Whisper has none);
- cross-attention k/v are stacked in `attention/linear_1`, q is `attention/linear_0`;
- `decoder/projection/weight` is an alias of the token embeddings (tied in HF).
int8 weights are stored with a per-row `weight_scale` (q = w * scale) and are dequantized here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .ct2_reader import read_ct2_model
from ..errors import ModelLoadError
from ..tokens import N_TIMESTAMPS, TIME_PRECISION



def _weights(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Dequantize int8 weights; return float32 arrays keyed like the spec."""
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(name + "_scale")
        if value.dtype == np.int8 and scale is not None:
            value = value.astype(np.float32) / scale.astype(np.float32).reshape(-1, 1)
        out[name] = value
    return out


def _layer_count(w: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in w:
        n += 1
    return n


def ct2_state_dict(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables onto WhisperForConditionalGeneration's state dict."""
    sd: dict[str, np.ndarray] = {}

    def norm(dst, src):
        sd[f"{dst}.weight"] = w[f"{src}/gamma"]
        sd[f"{dst}.bias"] = w[f"{src}/beta"]

    def linear(dst, src, bias=True):
        sd[f"{dst}.weight"] = w[f"{src}/weight"]
        if bias:
            sd[f"{dst}.bias"] = w[f"{src}/bias"]

    def fused(dst_prefix, names, src):
        weights = np.split(w[f"{src}/weight"], len(names), axis=0)
        biases = np.split(w[f"{src}/bias"], len(names), axis=0)
        for name, weight, bias in zip(names, weights, biases):
            sd[f"{dst_prefix}.{name}.weight"] = weight
            if name != "k_proj":  # Whisper's key projections have no bias
                sd[f"{dst_prefix}.{name}.bias"] = bias

    def ffn_and_self_attention(dst, src):
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    sd[f"{enc}.embed_positions.weight"] = w["encoder/position_encodings/encodings"]
    for i in range(_layer_count(w, "encoder")):
        ffn_and_self_attention(f"{enc}.layers.{i}", f"encoder/layer_{i}")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")

    sd[f"{dec}.embed_tokens.weight"] = w["decoder/embeddings/weight"]
    sd[f"{dec}.embed_positions.weight"] = w["decoder/position_encodings/encodings"]
    for i in range(_layer_count(w, "decoder")):
        dst, src = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        ffn_and_self_attention(dst, src)
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        fused(f"{dst}.encoder_attn", ["k_proj", "v_proj"], f"{src}/attention/linear_1")
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    return sd


def model_config(w: dict[str, np.ndarray], tokens: dict):
    from transformers import WhisperConfig

    d_model = w["encoder/conv1/weight"].shape[0]
    return WhisperConfig(
        vocab_size=w["decoder/embeddings/weight"].shape[0],
        num_mel_bins=w["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(w, "encoder"),
        decoder_layers=_layer_count(w, "decoder"),
        encoder_attention_heads=int(w["encoder/num_heads"]),
        decoder_attention_heads=int(w["decoder/num_heads"]),
        encoder_ffn_dim=w["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=w["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=w["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=w["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=tokens["<|endoftext|>"],
        eos_token_id=tokens["<|endoftext|>"],
        pad_token_id=tokens["<|endoftext|>"],
        decoder_start_token_id=tokens["<|startoftranscript|>"],
        # Suppression lives in the generation config only: transformers warns when both carry it.
        suppress_tokens=None,
        begin_suppress_tokens=None,
        tie_word_embeddings=True,
    )


def _special_ids(tokenizer_json: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}


# English-only checkpoints have 51864 tokens; multilingual ones 51865 and more (large-v3: 51866).
MULTILINGUAL_MIN_VOCAB = 51865


def token_facts(folder: Path, ct2_config: dict, vocab_size: int) -> dict:
    """Special token ids, languages and suppress lists from tokenizer.json and config.json."""
    specials = _special_ids(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
    by_id = {v: k for k, v in specials.items()}
    langs = {by_id[i]: i for i in ct2_config.get("lang_ids", []) if i in by_id}
    facts = dict(specials)
    facts.update(
        # tokenizer.json of English-only models lists the language tokens too, so the
        # vocabulary size is what tells them apart.
        multilingual=vocab_size >= MULTILINGUAL_MIN_VOCAB,
        lang_to_id=langs,
        suppress=list(ct2_config.get("suppress_ids", [])),
        suppress_begin=list(ct2_config.get("suppress_ids_begin", [])),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
    )
    return facts


def generation_config(config, tokens: dict):
    """The generation config HF's Whisper generate() needs for language, task and timestamps."""
    from transformers import GenerationConfig

    no_ts = tokens["<|notimestamps|>"]
    gc = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=tokens["suppress"],
        begin_suppress_tokens=tokens["suppress_begin"],
        alignment_heads=tokens["alignment_heads"],
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=tokens["<|startofprev|>"],
        max_initial_timestamp_index=50,  # openai/whisper: the first timestamp is at most 1.00 s
        return_timestamps=False,
        is_multilingual=tokens["multilingual"],
    )
    if tokens["multilingual"]:
        gc.lang_to_id = tokens["lang_to_id"]
        gc.task_to_id = {"transcribe": tokens["<|transcribe|>"], "translate": tokens["<|translate|>"]}
    return gc


def build_processor(folder: Path, n_mels: int):
    """WhisperProcessor from a CT2 folder's tokenizer.json, with the 1501 timestamp tokens added."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    # As in OpenAI's own HF tokenizers: <|endoftext|> is unk, bos, eos and pad, so recipes that pad
    # labels with tokenizer.pad (the HF blog's collator) work.
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(tokenizer_file=str(folder / "tokenizer.json"), unk_token=end, bos_token=end,
                                 eos_token=end, pad_token=end)
    # Whisper's tokenizer finds the first timestamp id as "last special id + 1", so every
    # special token (sot, languages, tasks, notimestamps) must be registered, in id order.
    added = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"]) if t["special"]]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    timestamps = [AddedToken(f"<|{i * TIME_PRECISION:.2f}|>", lstrip=False, rstrip=False,
                             normalized=False, special=False) for i in range(N_TIMESTAMPS)]
    if tokenizer.convert_tokens_to_ids("<|0.00|>") in (None, tokenizer.unk_token_id):
        tokenizer.add_tokens(timestamps)
    features = WhisperFeatureExtractor(feature_size=n_mels)
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def convert_ct2_folder(folder: str | Path, out_dir: str | Path, model_bin: bytes | None = None) -> None:
    """Convert a CTranslate2 Whisper folder into an HF folder (save_pretrained layout) at out_dir.

    `model_bin` is the content of model.bin when it is not a file in `folder` (shipped in parts)."""
    from transformers import WhisperForConditionalGeneration

    folder, out_dir = Path(folder), Path(out_dir)
    needed = ("config.json", "tokenizer.json") + (("model.bin",) if model_bin is None else ())
    for name in needed:
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder}: {name} is missing; a faster-whisper folder holds model.bin, "
                                 "config.json and tokenizer.json")
    spec, variables = read_ct2_model(folder / "model.bin", data=model_bin)
    if spec != "WhisperSpec":
        raise ModelLoadError(f"{folder}/model.bin is a {spec}, not a Whisper model")
    w = _weights(variables)
    ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokens = token_facts(folder, ct2_config, vocab_size=w["decoder/embeddings/weight"].shape[0])
    config = model_config(w, tokens)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in ct2_state_dict(w).items()}
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ModelLoadError(f"{folder}: conversion left weights unset: {missing[:5]}")
    model.generation_config = generation_config(config, tokens)
    processor = build_processor(folder, config.num_mel_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
