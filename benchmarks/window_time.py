"""Where the transformers backend's time goes on short clips: encoder, decoder, generate (issue 34).

    python benchmarks/window_time.py [--beam-size 1] [--precision auto] [--short 100] [--threads 2]

Decodes the demo data set's short clips (test.json, then train.json rows, as infer_speed.py) with
the defaults (packed, batch 16) and times, from outside, the encoder's forward, the decoder's
forward (the first step and every step of the search) and generate as a whole: the rest of the
wall time is features, packing and the results. One run after a warm-up; the figures move with
the machine's noise (benchmarks/RESULTS.md), so compare runs of one session.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset  # noqa: E402


def timed(obj, name: str, totals: dict, key: str) -> None:
    """Wrap obj.<name> (an instance attribute) so each call adds its seconds to totals[key]."""
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
            totals[key + " calls"] += 1
    setattr(obj, name, wrapper)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument("--short", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.transcribe import Transcriber, TranscribeOptions

    torch.set_num_threads(args.threads)
    data = dataset()
    paths = [r.audio_path for r in read_manifest(data.test) + read_manifest(data.train)][:args.short]
    t = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions(batch_size=16, language="en",
                                                                   beam_size=args.beam_size, precision=args.precision))
    whisper = t.backend.whisper
    totals = {k: 0.0 for k in ("encoder", "encoder calls", "decoder", "decoder calls", "generate", "generate calls")}
    timed(whisper.model.encoder, "forward", totals, "encoder")
    timed(whisper.model.decoder, "forward", totals, "decoder")
    timed(whisper, "generate", totals, "generate")
    list(t.transcribe_files(paths[:2]))  # warm-up
    totals.update({k: 0 for k in totals})
    start = time.perf_counter()
    list(t.transcribe_files(paths))
    wall = time.perf_counter() - start
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"{len(paths)} clips, beam {args.beam_size}, precision {args.precision} (bf16 encoder: "
          f"{t.backend.uses_bf16_encoder}), {args.threads} threads")
    print(f"wall {wall:.2f} s = encoder {totals['encoder']:.2f} ({totals['encoder calls']} calls) + generate "
          f"{totals['generate']:.2f} + the rest {wall - totals['encoder'] - totals['generate']:.2f} (first steps "
          f"included); decoder forward {totals['decoder']:.2f} in all ({totals['decoder calls']} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
