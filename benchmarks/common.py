"""Shared pieces of the benchmarks: the machine's matmul peak, peak RSS, the demo data set, WER."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "demo_output" / "bench-data"


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an n x n matmul (2 n^3 FLOPs) over a few runs: the machine's practical peak."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def dataset(folder: Path = DEFAULT_DATA, n_train: int = 240):
    """The demo's English data set (espeak-ng, a voice tiny.en gets wrong), built once and cached."""
    from whisper_lora.synthetic.datasets import build_dataset

    return build_dataset(folder, language="en", n_train=n_train, long_seconds=600.0)


def emit(record: dict) -> None:
    """Child processes report one JSON line, prefixed so the parent can find it among logs."""
    print("RESULT " + json.dumps(record), flush=True)
    sys.stdout.flush()


def parse_result(stdout: str) -> dict:
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("the benchmark child printed no RESULT line:\n" + stdout[-3000:])
