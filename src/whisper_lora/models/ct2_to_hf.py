"""Turn a faster-whisper / CTranslate2 Whisper folder back into a complete HF Whisper model.

First model.bin (binary spec version 5 or 6) is read into numpy arrays. Its layout, as
CTranslate2's ModelSpec._serialize writes it (little-endian):
  u32 version, str spec name, u32 revision, u32 n_variables,
  n_variables x (str name, u8 rank, rank x u32 dim, u8 dtype id, u32 n_bytes, bytes),
  u32 n_aliases, n_aliases x (str alias, str target)
where str = u16 length (including a trailing NUL) + UTF-8 bytes + NUL.

Then the weights are mapped onto HF's names. CTranslate2's converter fuses some projections;
this undoes it:
- self-attention q/k/v are stacked in `self_attention/linear_0` (the k bias is zero: Whisper has none);
- cross-attention k/v are stacked in `attention/linear_1`, q is `attention/linear_0`;
- `decoder/projection/weight` is an alias of the token embeddings (tied in HF).
int8 weights are stored with a per-row `weight_scale` (q = w * scale) and are dequantized here.
The processor and generation config come from the folder's tokenizer.json and config.json
(processor.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from .cache import cached_conversion, weights_key
from .openai_heads import default_alignment_heads, openai_alignment_heads
from .processor import assemble, build_processor, token_facts
from ..errors import ModelLoadError


# ---- reading model.bin --------------------------------------------------------------------------


# CTranslate2's DataType enum order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5
SUPPORTED_VERSIONS = (5, 6)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("unexpected end of file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        return self.take(n)[:-1].decode("utf-8")


def read_ct2_model(path: str | Path, data: bytes | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}) with aliases resolved to their targets.

    `data`, when given, is the file's content (a model shipped in parts); `path` then only names it."""
    path = Path(path)
    try:
        r = _Reader(path.read_bytes() if data is None else data)
        (version,) = r.unpack("I")
        if version not in SUPPORTED_VERSIONS:
            raise ModelLoadError(f"{path}: CTranslate2 binary version {version} is not supported "
                                 f"(supported: {SUPPORTED_VERSIONS}); re-convert the model with ctranslate2 4.x")
        spec = r.string()
        r.unpack("I")  # revision
        (count,) = r.unpack("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = r.string()
            (rank,) = r.unpack("B")
            shape = r.unpack(f"{rank}I") if rank else ()
            (dtype_id,) = r.unpack("B")
            (nbytes,) = r.unpack("I")
            raw = r.take(nbytes)
            if dtype_id == _BFLOAT16:
                # numpy has no bfloat16: widen the 16 stored bits into the top half of a float32.
                bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                array = bits.view(np.float32)
            elif dtype_id in _DTYPES:
                array = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
            else:
                raise ModelLoadError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            variables[name] = array.reshape(shape)
        (n_alias,) = r.unpack("I")
        for _ in range(n_alias):
            alias, target = r.string(), r.string()
            variables[alias] = variables[target]
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a valid CTranslate2 model.bin ({exc}); "
                             "the file may be truncated: re-download or re-convert it") from exc
    return spec, variables


# ---- CTranslate2 names -> HF names -------------------------------------------------------------


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


def convert_ct2_folder(folder: str | Path, out_dir: str | Path, model_bin: bytes | None = None) -> None:
    """Convert a CTranslate2 Whisper folder into an HF folder (save_pretrained layout) at out_dir.

    `model_bin` is the content of model.bin when it is not a file in `folder` (shipped in parts)."""
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
    if not tokens["alignment_heads"]:  # a config.json written without them: openai's, by the model's shape
        n_layers, n_heads = config.decoder_layers, config.decoder_attention_heads
        tokens["alignment_heads"] = (openai_alignment_heads(config.vocab_size, config.encoder_layers, n_layers,
                                                            config.d_model, n_heads)
                                     or default_alignment_heads(n_layers, n_heads))
    # A copy of each: CTranslate2 stores equal variables once, as aliases (a random-init model's zero
    # biases and unit norms), and tensors sharing memory are refused by save_pretrained.
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in ct2_state_dict(w).items()}
    model = assemble(config, state, tokens, folder)
    processor = build_processor(folder, config.num_mel_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def hf_folder(folder: Path, cache: Path, model_bin: bytes | None = None) -> Path:
    """The HF folder converted from a CTranslate2 folder, converting on first use (cached by weights).

    `model_bin` is the content of model.bin when it is not a file in `folder` (shipped in parts)."""
    data = model_bin if model_bin is not None else (folder / "model.bin").read_bytes()
    return cached_conversion("ct2-" + weights_key(data), cache,
                             lambda out: convert_ct2_folder(folder, out, model_bin=data))
