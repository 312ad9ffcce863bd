"""Read a CTranslate2 `model.bin` (binary spec version 6) into numpy arrays.

Layout, as CTranslate2's ModelSpec._serialize writes it (little-endian):
  u32 version, str spec name, u32 revision, u32 n_variables,
  n_variables x (str name, u8 rank, rank x u32 dim, u8 dtype id, u32 n_bytes, bytes),
  u32 n_aliases, n_aliases x (str alias, str target)
where str = u16 length (including a trailing NUL) + UTF-8 bytes + NUL.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

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
