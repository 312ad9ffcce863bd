"""Does a model still write timestamps? Two test utterances joined by a pause, transcribed with
return_timestamps=True: a pass has two or more segments, start times increasing, all inside the audio.

    python benchmarks/timestamps_check.py --data /tmp/demo_en MODEL [MODEL ...] [--pairs 10]

MODEL is any spec load_model takes (bundled:tiny.en, a training output folder). Prints, per model,
the pairs that pass and the segments of the first few.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def joined_pairs(manifest, pairs: int, pause: float = 0.6):
    from whisper_lora.audio import SAMPLE_RATE, load_audio
    from whisper_lora.data.manifest import read_manifest

    rows = read_manifest(manifest)
    gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
    out = []
    for i in range(pairs):
        a, b = rows[2 * i], rows[2 * i + 1]
        audio = np.concatenate([load_audio(a.audio_path), gap, load_audio(b.audio_path)])
        out.append((audio, a.text + " " + b.text))
    return out


def segments_of(model, processor, audio):
    import torch

    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        tokens = model.generate(input_features=features, return_timestamps=True, max_new_tokens=200)
    decoded = processor.tokenizer.decode(tokens[0], output_offsets=True, skip_special_tokens=False)
    return [(o["timestamp"][0], o["timestamp"][1], o["text"].strip()) for o in decoded["offsets"]]


def passes(segments, seconds: float) -> bool:
    starts = [s for s, _, _ in segments]
    inside = all(s is not None and e is not None and 0 <= s <= e <= seconds + 0.5 for s, e, _ in segments)
    return len(segments) >= 2 and inside and all(b > a for a, b in zip(starts, starts[1:]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--data", required=True, help="folder with test.json (whisper_lora.synthetic.datasets.build_dataset)")
    p.add_argument("--pairs", type=int, default=10)
    args = p.parse_args()
    from whisper_lora.models import load_model

    pairs = joined_pairs(Path(args.data) / "test.json", args.pairs)
    for spec in args.models:
        model, processor = load_model(spec)
        ok, shown = 0, []
        for audio, text in pairs:
            segs = segments_of(model, processor, audio)
            ok += passes(segs, len(audio) / 16000)
            if len(shown) < 3:
                shown.append(f"    {len(audio) / 16000:.1f} s: " + " | ".join(f"{s:.2f}-{e:.2f} {t}" for s, e, t in segs))
        print(f"{spec}: {ok}/{len(pairs)} pairs give >= 2 increasing segments inside the audio")
        print("\n".join(shown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
