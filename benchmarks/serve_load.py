"""Load on `whisper-lora serve`: many clients at once against one at a time, loopback only.

    python benchmarks/serve_load.py [--requests 200] [--concurrency 16] [--sequential 40]

Starts the real server in a child process (bundled:tiny.en with two LoRA adapters made for the
run), sends espeak-ng clips of the demo's test sentences with the official openai client, each
request to the base or one of the adapters in turn, and prints: p50/p95 latency, requests and
audio-seconds per second, errors (must be 0), and the server's memory before and after. The same
figures for one request at a time give the baseline the batching is measured against.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("whisper-1", "calls", "radio")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clips(folder: Path, n: int) -> list[tuple[Path, float]]:
    from whisper_lora.audio import audio_duration
    from whisper_lora.synthetic.sentences import read_sentences
    from whisper_lora.synthetic.tts import synthesize_cached

    paths = [synthesize_cached(text, folder) for text in read_sentences("en", "eval")[:n]]
    return [(p, audio_duration(p)) for p in paths]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    sys.path.insert(0, str(ROOT))
    from tests.adapter_helpers import make_adapter

    adapters = [f"calls={make_adapter(folder / 'calls', seed=2, scale=0.03)}",
                f"radio={make_adapter(folder / 'radio', seed=5, scale=0.025)}"]
    command = [sys.executable, "-m", "whisper_lora", "serve", "--model", "bundled:tiny.en", "--port", str(port),
               *[arg for a in adapters for arg in ("--adapter", a)]]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the server exited while starting")
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not start within 180 s")


def run(client, jobs, concurrency: int) -> dict:
    def one(job):
        path, _, model = job
        start = time.perf_counter()
        try:
            with open(path, "rb") as f:
                client.audio.transcriptions.create(model=model, file=f)
            return time.perf_counter() - start, None
        except Exception as exc:  # noqa: BLE001 - counted, not raised: the figure is how many
            return time.perf_counter() - start, repr(exc)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, jobs))
    wall = time.perf_counter() - start
    latencies = sorted(t for t, _ in outcomes)
    return {"requests": len(jobs), "concurrency": concurrency, "wall_s": wall,
            "p50_s": latencies[len(latencies) // 2], "p95_s": latencies[int(len(latencies) * 0.95) - 1],
            "req_per_s": len(jobs) / wall, "audio_s_per_s": sum(d for _, d, _ in jobs) / wall,
            "errors": sum(e is not None for _, e in outcomes), "first_error": next((e for _, e in outcomes if e), None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=40, help="requests sent one at a time, for the baseline")
    parser.add_argument("--clips", type=int, default=40, help="distinct sentences")
    args = parser.parse_args()
    import openai

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio = clips(folder / "speech", args.clips)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(folder, port)
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                   timeout=600)
            def jobs(n):
                return [(*audio[i % len(audio)], MODELS[i % len(MODELS)]) for i in range(n)]
            run(client, jobs(3), 1)  # warm-up: each model's first decode
            before = rss_mb(server.pid)
            sequential = run(client, jobs(args.sequential), 1)
            concurrent_ = run(client, jobs(args.requests), args.concurrency)
            after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"server: bundled:tiny.en + 2 adapters, {os.cpu_count()} CPUs; {args.clips} distinct clips "
          f"({sum(d for _, d in audio) / len(audio):.1f} s each on average), models in turn: {', '.join(MODELS)}")
    print(f"{'run':<22}{'requests':>9}{'p50 s':>8}{'p95 s':>8}{'req/s':>8}{'audio-s/s':>11}{'errors':>8}")
    for name, r in (("one at a time", sequential), (f"{args.concurrency} at a time", concurrent_)):
        print(f"{name:<22}{r['requests']:>9}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}{r['req_per_s']:>8.2f}"
              f"{r['audio_s_per_s']:>11.1f}{r['errors']:>8}")
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")
    print(f"throughput: {concurrent_['req_per_s'] / sequential['req_per_s']:.2f}x one at a time")
    print(f"server memory (RSS): {before:.0f} MB after warm-up, {after:.0f} MB after the load")


if __name__ == "__main__":
    main()
