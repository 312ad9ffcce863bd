"""Packing short clips into shared windows: WER by gap, on several sets of the demo's clips.

    python benchmarks/packing_check.py [--data FOLDER] [--model bundled:tiny.en] [--gaps 0.5,0.8,1.5] [--fp32]

For each set (the first 100 test+train rows, which infer_speed.py times; train rows 100-200;
train rows 200 on with validation; the other voice's test set) and each gap, prints the WER of
our hf backend with packing, how many windows the first pass used, how many clips it left in
doubt (packed again, RETRY_GAP_SECONDS apart) and how many still decoded alone; then the WER
with every clip in a window of its own (--no_pack). Greedy, temperature 0 only, so every figure
is deterministic: what differs between gaps is which clips share windows and where Whisper
ends its segments. Decoding uses the default precision (on a CPU without bf16: the output
projection in int8); --fp32 decodes in float32 throughout, for comparison.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset  # noqa: E402


def sets(folder: Path) -> dict[str, list]:
    from whisper_lora.data.manifest import read_manifest

    test, train = read_manifest(folder / "test.json"), read_manifest(folder / "train.json")
    out = {"infer_speed's 100": (test + train)[:100], "train 100-200": train[100:200],
           "train 200+, validation": train[200:] + read_manifest(folder / "validation.json")}
    if (folder / "test_other_voice.json").exists():
        out["other voice"] = read_manifest(folder / "test_other_voice.json")
    return {name: rows for name, rows in out.items() if rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="an existing build_dataset folder (default: common.dataset(), built once)")
    p.add_argument("--model", default="bundled:tiny.en")
    p.add_argument("--gaps", default="0.5,0.8,1.5", help="comma list of seconds between packed clips")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fp32", action="store_true", help="float32 throughout (default: the default precision)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from whisper_lora.decoding import packing
    from whisper_lora.audio import load_audio
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.models import load_model
    from whisper_lora.transcribe import Transcriber, TranscribeOptions

    folder = Path(args.data) if args.data else dataset()
    precision = "fp32" if args.fp32 else "auto"
    options = TranscribeOptions(language="en", beam_size=1, temperatures=(0.0,), precision=precision)
    model, processor = load_model(args.model)  # once, for both ways of decoding
    packed = Transcriber.from_model(model, processor, options).backend
    alone = Transcriber.from_model(model, processor, replace(options, pack=False)).backend
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"model {args.model}, batch {options.batch_size}, retry gap {packing.RETRY_GAP_SECONDS:g} s, "
          f"precision {precision}" + (" (int8 output projection)" if packed.uses_int8_head else ""))
    counts = {}

    def counting(audios, **kwargs):  # calls with timestamps=True decode windows; others, clips alone
        key = "windows" if kwargs.get("timestamps") else "alone"
        counts[key] = counts.get(key, []) + [len(audios)]
        return packed.decode_batch(audios, **kwargs)
    for name, rows in sets(folder).items():
        audios = [load_audio(r.audio_path) for r in rows]
        refs = [r.text for r in rows]
        parts = []
        for gap in (float(g) for g in args.gaps.split(",")):
            packing.GAP_SECONDS = gap
            counts.clear()
            # packed.decode_short, with the backend's decode_batch counted
            decoded = packing.decode_short(audios, counting, packed.options, packed.packing)
            hyps = [" ".join(s.text for s in d.segments) for d in decoded]
            first = len(packing.plan([len(a) / 16000 for a in audios])[0])
            again = sum(counts.get("windows", [])) - first
            parts.append(f"gap {gap:g}: {error_rates(refs, hyps, 'en').wer * 100:.1f}% "
                         f"({first} windows, +{again} again, {sum(counts.get('alone', []))} alone)")
        hyps = [" ".join(s.text for s in d.segments) for d in alone.decode_short(audios)]
        parts.append(f"unpacked: {error_rates(refs, hyps, 'en').wer * 100:.1f}%")
        print(f"{name} ({len(rows)} clips): " + "; ".join(parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
