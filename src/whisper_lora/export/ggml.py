"""Write a Whisper model as the single ggml file whisper.cpp loads (`whisper-cli -m FILE`).

The file, as whisper.cpp's own converters (models/convert-pt-to-ggml.py, convert-h5-to-ggml.py)
write it and src/whisper.cpp `whisper_model_load` reads it, all little-endian:

    int32 magic 0x67676d6c ("ggml")
    int32 x 11 hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
                        n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
    int32 n_mels, int32 201, float32 [n_mels][201]   mel filters (whisper.cpp computes its own
                                                     log-mel with them)
    int32 n, then n x (int32 length, bytes)          the byte-level BPE tokens, in id order, up to
                                                     <|endoftext|>; whisper.cpp names the special
                                                     tokens after them itself
    per tensor: int32 n_dims, int32 name length, int32 type, int32 ne[n_dims] (fastest axis
                first, so a numpy shape reversed), the name, then the data

whisper.cpp checks every tensor's name, shape and type against what it expects, so the types
here are its choice, not ours: 1-D tensors, the conv biases (stored as [n, 1]) and both
positional embeddings are float32; the conv kernels (3-D) are float16; every other 2-D weight
has the file's type. Its `quantize` tool quantizes exactly those 2-D
weights too, so a q8_0/q5_0 file written here has the same layout as `quantize` output.
Quantized blocks follow ggml's reference quantizers (ggml-quants.c), done with numpy from the
float32 weights (the `quantize` tool starts from an f16 file, i.e. rounds twice).

One module for one job, the ggml file: its header, tensors and quantizers follow one format
and are checked against whisper.cpp together (over 300 lines).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ModelLoadError, OptionsError, WhisperLoraError
from ..fileio import atomic_path
from ..models.names import openai_name

MAGIC = 0x67676D6C  # "ggml" read as a little-endian int32
N_FFT_BINS = 400 // 2 + 1  # whisper's 400-sample (25 ms) FFT window gives 201 frequency bins
QK = 32  # values per block in q8_0 and q5_0 (ggml's QK8_0, QK5_0)

# File types (ggml_ftype), the `ftype` hparam: what the big 2-D weights are stored as. whisper.cpp's
# converter also offers all-f32 files, but the whisper.cpp that pywhispercpp 1.5.1 ships (1.8.5)
# aborts on one at the first convolution (GGML_ASSERT src0->type == F16, flash attention on or
# off), so they are not offered.
QUANTIZATIONS = ("f16", "q8_0", "q5_0")  # f16 first: the default
FILE_TYPE = {"f16": 1, "q8_0": 7, "q5_0": 8}
# Tensor types (ggml_type) written in each tensor's header.
TENSOR_TYPE = {"f32": 0, "f16": 1, "q5_0": 6, "q8_0": 8}
TYPE_NAME = {v: k for k, v in TENSOR_TYPE.items()}
# Quantized files carry ggml's quantization format version in ftype, as `quantize` writes it:
# ftype = GGML_QNT_VERSION (2) * GGML_QNT_VERSION_FACTOR (1000) + file type.
QNT_VERSION, QNT_VERSION_FACTOR = 2, 1000

# One block of each quantized type: fp16 scale d, then the quants (ggml-common.h block_q8_0,
# block_q5_0); numpy structured dtypes are packed, so the sizes are ggml's: 34 and 22 bytes.
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", QK)])
Q5_0_BLOCK = np.dtype([("d", "<f2"), ("qh", "<u4"), ("qs", "u1", QK // 2)])

HPARAMS = ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_text_ctx",
           "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype")

# Tensors that stay float32 whatever the file type (whisper.cpp allocates them so).
ALWAYS_F32 = ("encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding",
              "decoder.positional_embedding")


# ---- quantization (ggml's reference quantizers, vectorised) ----

def _blocks(values: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if flat.size % QK:
        raise ValueError(f"{flat.size} values are not a whole number of {QK}-value blocks")
    return flat.reshape(-1, QK)


def _inverse(d: np.ndarray) -> np.ndarray:
    """1/d, and 0 where d is 0 (an all-zero block), as ggml does."""
    out = np.zeros_like(d)
    np.divide(np.float32(1), d, out=out, where=d != 0)
    return out


def quantize_q8_0(values: np.ndarray) -> bytes:
    """Blocks of 32: d = max|x| / 127 (fp16), q = round(x / d) as int8; C's roundf rounds
    halves away from zero, numpy's rint to even, hence the floor(|v| + 0.5)."""
    x = _blocks(values)
    d = np.abs(x).max(axis=1) / np.float32(127)
    v = x * _inverse(d)[:, None]
    out = np.empty(len(x), dtype=Q8_0_BLOCK)
    out["d"] = d.astype(np.float16)
    out["qs"] = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)
    return out.tobytes()


def quantize_q5_0(values: np.ndarray) -> bytes:
    """Blocks of 32: d = (the value of largest magnitude) / -16 (fp16), q = x / d + 16 in 0..31.
    The low 4 bits of q[j] and q[j + 16] share byte qs[j]; the 5th bits go to bit j of qh."""
    x = _blocks(values)
    biggest = x[np.arange(len(x)), np.abs(x).argmax(axis=1)]  # first of equals, as ggml's loop
    d = biggest / np.float32(-16)
    q = np.clip(np.trunc(x * _inverse(d)[:, None] + np.float32(16.5)), 0, 31).astype(np.uint32)
    out = np.empty(len(x), dtype=Q5_0_BLOCK)
    out["d"] = d.astype(np.float16)
    out["qs"] = (q[:, : QK // 2] & 0xF) | ((q[:, QK // 2:] & 0xF) << 4)
    out["qh"] = (((q >> 4) & 1) << np.arange(QK, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
    return out.tobytes()


def dequantize(data: bytes, kind: str) -> np.ndarray:
    """The float32 values of q8_0 or q5_0 blocks (flat), as ggml's dequantize_row_* computes them."""
    if kind == "q8_0":
        blocks = np.frombuffer(data, dtype=Q8_0_BLOCK)
        q = blocks["qs"].astype(np.float32)
    elif kind == "q5_0":
        blocks = np.frombuffer(data, dtype=Q5_0_BLOCK)
        qs = blocks["qs"].astype(np.int32)
        high = (blocks["qh"][:, None] >> np.arange(QK, dtype=np.uint32)) & 1
        q = (np.concatenate([qs & 0xF, qs >> 4], axis=1) | (high.astype(np.int32) << 4)) - 16
        q = q.astype(np.float32)
    else:
        raise ValueError(f"{kind}: not a quantized type")
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


# ---- what goes into the file ----

def tensor_kind(name: str, n_dims: int, quantization: str) -> str:
    """The storage type whisper.cpp expects for one tensor of a file of the given type."""
    if n_dims < 2 or name in ALWAYS_F32:
        return "f32"
    if n_dims == 3:  # conv1/conv2 kernels
        return "f16"
    return quantization


def hparams_of(config, quantization: str) -> dict[str, int]:
    ftype = FILE_TYPE[quantization]
    if quantization.startswith("q"):
        ftype += QNT_VERSION * QNT_VERSION_FACTOR
    return {"n_vocab": config.vocab_size, "n_audio_ctx": config.max_source_positions,
            "n_audio_state": config.d_model, "n_audio_head": config.encoder_attention_heads,
            "n_audio_layer": config.encoder_layers, "n_text_ctx": config.max_target_positions,
            "n_text_state": config.d_model, "n_text_head": config.decoder_attention_heads,
            "n_text_layer": config.decoder_layers, "n_mels": config.num_mel_bins, "ftype": ftype}


def _check_architecture(config) -> None:
    """whisper.cpp hard-codes parts of Whisper's shape; a model outside them cannot load."""
    problems = []
    if config.encoder_ffn_dim != 4 * config.d_model or config.decoder_ffn_dim != 4 * config.d_model:
        problems.append(f"MLP width {config.encoder_ffn_dim}/{config.decoder_ffn_dim} is not 4 x d_model "
                        f"({4 * config.d_model})")
    if getattr(config, "activation_function", "gelu") != "gelu":
        problems.append(f"activation {config.activation_function} (whisper.cpp uses gelu)")
    if problems:
        raise WhisperLoraError("this model cannot run in whisper.cpp: " + "; ".join(problems))


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet read backwards: each printable stand-in character -> its
    byte. Bytes that print as themselves keep their code; the other 68 were moved to 256 + i."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(moved)})
    return table


def vocabulary_bytes(tokenizer) -> list[bytes]:
    """The BPE tokens before <|endoftext|>, as raw bytes in id order (the multilingual
    vocabulary's id 50256 is empty, as in openai's tiktoken file)."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if not isinstance(eot, int) or eot <= 0:
        raise ModelLoadError("the tokenizer has no <|endoftext|> token: not a Whisper tokenizer")
    table = byte_decoder()
    words = []
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(eot)))):
        try:
            words.append(bytes(table[c] for c in (token or "")))
        except KeyError as exc:
            raise ModelLoadError(f"token {i} {token!r} is not byte-level BPE: not a Whisper tokenizer") from exc
    return words


def mel_filters_of(feature_extractor, n_mels: int) -> np.ndarray:
    """[n_mels][201] float32: the slaney mel filters openai's mel_filters.npz holds (the HF
    feature extractor keeps them transposed)."""
    filters = np.asarray(feature_extractor.mel_filters, dtype=np.float32).T
    if filters.shape != (n_mels, N_FFT_BINS):
        raise ModelLoadError(f"the feature extractor's mel filters are {filters.shape}, expected "
                             f"({n_mels}, {N_FFT_BINS}) for a model with {n_mels} mel bins")
    return np.ascontiguousarray(filters)


def ggml_tensors(model) -> list[tuple[str, np.ndarray]]:
    """(whisper.cpp name, float32 array) for every weight, in state-dict order; proj_out is tied
    to the token embedding in whisper.cpp, so it must equal it and is not written."""
    state = model.state_dict()
    embed = state.get("model.decoder.embed_tokens.weight")
    proj = state.get("proj_out.weight")
    if embed is None:
        raise ModelLoadError("the model has no model.decoder.embed_tokens.weight: not a Whisper model")
    if proj is not None and not (proj.data_ptr() == embed.data_ptr() or proj.float().equal(embed.float())):
        raise WhisperLoraError("the output projection differs from the token embedding: whisper.cpp "
                               "ties them, so this model cannot be written as ggml")
    tensors = []
    for hf, value in state.items():
        if hf == "proj_out.weight":
            continue
        name = openai_name(hf)
        array = value.detach().float().cpu().numpy()
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            array = array.reshape(-1, 1)  # whisper.cpp adds them as [1, n_state] (ne order)
        tensors.append((name, array))
    return tensors


def _tensor_bytes(name: str, array: np.ndarray, kind: str) -> bytes:
    if kind == "f32":
        return np.ascontiguousarray(array, dtype="<f4").tobytes()
    if kind == "f16":
        half = np.ascontiguousarray(array, dtype="<f2")
        if not np.isfinite(half).all():
            raise WhisperLoraError(f"{name}: values beyond float16's range (±65504); whisper.cpp cannot hold "
                                   "this model")
        return half.tobytes()
    if array.shape[-1] % QK:
        raise WhisperLoraError(f"{name}: rows of {array.shape[-1]} values cannot be cut into {kind}'s "
                               f"{QK}-value blocks; use --quantization f16")
    return quantize_q8_0(array) if kind == "q8_0" else quantize_q5_0(array)


def _write_tensor(f: BinaryIO, name: str, array: np.ndarray, kind: str) -> None:
    encoded = name.encode("utf-8")
    data = _tensor_bytes(name, array, kind)
    f.write(struct.pack("<iii", array.ndim, len(encoded), TENSOR_TYPE[kind]))
    f.write(struct.pack(f"<{array.ndim}i", *reversed(array.shape)))
    f.write(encoded)
    f.write(data)


def write_ggml(model, processor, path: str | os.PathLike, quantization: str = "f16") -> Path:
    """Write model (a plain WhisperForConditionalGeneration; merge adapters first) and its
    processor's tokenizer and mel filters as a whisper.cpp ggml file, atomically."""
    if quantization not in QUANTIZATIONS:
        raise OptionsError(f"--quantization {quantization}: --format ggml takes {', '.join(QUANTIZATIONS)}")
    config = model.config
    _check_architecture(config)
    hparams = hparams_of(config, quantization)
    filters = mel_filters_of(processor.feature_extractor, config.num_mel_bins)
    words = vocabulary_bytes(processor.tokenizer)
    tensors = ggml_tensors(model)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<I", MAGIC))
        f.write(struct.pack(f"<{len(HPARAMS)}i", *(hparams[k] for k in HPARAMS)))
        f.write(struct.pack("<ii", *filters.shape))
        f.write(filters.astype("<f4").tobytes())
        f.write(struct.pack("<i", len(words)))
        for word in words:
            f.write(struct.pack("<i", len(word)))
            f.write(word)
        for name, array in tensors:
            _write_tensor(f, name, array, tensor_kind(name, array.ndim, quantization))
    return Path(path)


# ---- reading a file back (tests, benchmarks, a user checking an export) ----

@dataclass
class GgmlTensor:
    kind: str  # f32, f16, q8_0, q5_0
    shape: tuple[int, ...]  # numpy order (ne reversed)
    data: bytes

    def array(self) -> np.ndarray:
        """The values as float32 in `shape` (quantized blocks dequantized)."""
        if self.kind in ("f32", "f16"):
            return np.frombuffer(self.data, dtype="<f4" if self.kind == "f32" else "<f2").astype(
                np.float32).reshape(self.shape)
        return dequantize(self.data, self.kind).reshape(self.shape)


@dataclass
class GgmlFile:
    hparams: dict[str, int]
    mel_filters: np.ndarray  # [n_mels][201]
    tokens: list[bytes]
    tensors: dict[str, GgmlTensor] = field(default_factory=dict)


def _nbytes(kind: str, count: int) -> int:
    if kind in ("f32", "f16"):
        return count * (4 if kind == "f32" else 2)
    block = Q8_0_BLOCK if kind == "q8_0" else Q5_0_BLOCK
    return count // QK * block.itemsize


def read_ggml(path: str | os.PathLike, with_tensors: bool = True) -> GgmlFile:
    """Parse a whisper.cpp ggml file; a wrong magic, an unknown tensor type or a file that ends
    early raises ModelLoadError naming the file."""
    path = Path(path)
    data = path.read_bytes()
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        if at + n > len(data):
            raise ModelLoadError(f"{path}: ends early at byte {len(data)} (truncated ggml file)")
        chunk = data[at:at + n]
        at += n
        return chunk

    def ints(n: int) -> tuple[int, ...]:
        return struct.unpack(f"<{n}i", take(4 * n))

    if struct.unpack("<I", take(4))[0] != MAGIC:
        raise ModelLoadError(f"{path}: not a ggml file (bad magic)")
    hparams = dict(zip(HPARAMS, ints(len(HPARAMS))))
    n_mel, n_fft = ints(2)
    filters = np.frombuffer(take(4 * n_mel * n_fft), dtype="<f4").reshape(n_mel, n_fft)
    (n_words,) = ints(1)
    tokens = [take(ints(1)[0]) for _ in range(n_words)]
    result = GgmlFile(hparams, filters, tokens)
    if not with_tensors:
        return result
    while at < len(data):
        n_dims, length, ttype = ints(3)
        if ttype not in TYPE_NAME:
            raise ModelLoadError(f"{path}: tensor type {ttype} is none of {sorted(TYPE_NAME)}")
        shape = tuple(reversed(ints(n_dims)))
        name = take(length).decode("utf-8")
        kind = TYPE_NAME[ttype]
        result.tensors[name] = GgmlTensor(kind, shape, take(_nbytes(kind, int(np.prod(shape)))))
    return result
