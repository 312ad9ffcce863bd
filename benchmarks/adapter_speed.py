"""Why a fine-tuned model decodes slower than its base: unmerged LoRA layers, or more fallbacks?

    python benchmarks/adapter_speed.py --adapter OUTPUT_DIR --data test.jsonl --language nl

Decodes the manifest three times with the transcribe defaults (temperature fallback on): the
base model, base + adapter unmerged (peft: every adapted layer adds a low-rank product), and the
adapter merged into the weights (the default since this benchmark). Printed per model: decoding
speed (audio seconds per wall second, loading excluded), files that fell back to sampling,
words written, normalised WER.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class FallbackCounter(logging.Handler):
    """Counts the files the hf backend sends to the temperature fallback (its debug message)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.files = 0

    def emit(self, record):
        if record.getMessage().startswith("temperature fallback for"):
            self.files += int(record.getMessage().split()[3])


def measure(spec: str, merge: bool, rows, language: str) -> dict:
    from whisper_lora.audio import audio_duration
    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.models import load_model
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.transcribe import Transcriber

    model, processor = load_model(spec, merge=merge)
    transcriber = Transcriber.from_model(model, processor, TranscribeOptions(language=language), model_name=spec)
    counter = FallbackCounter()
    hf_log = logging.getLogger("whisper_lora.decoding.hf")
    hf_log.addHandler(counter)
    hf_log.setLevel(logging.DEBUG)
    start = time.perf_counter()
    texts = [r.text for r in transcriber.transcribe_files([row.audio_path for row in rows])]
    wall = time.perf_counter() - start
    hf_log.removeHandler(counter)
    seconds = sum(audio_duration(row.audio_path) for row in rows)
    wer = error_rates([row.text for row in rows], texts, language).words.rate
    return {"speed": seconds / wall, "fallback_files": counter.files, "words": sum(len(t.split()) for t in texts),
            "wer": wer, "wall": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True, help="a training output folder")
    p.add_argument("--data", required=True, help="manifest to decode")
    p.add_argument("--language", required=True)
    args = p.parse_args()
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.models import base_model_of

    rows = read_manifest(args.data)
    base = base_model_of(args.adapter)
    print(f"{len(rows)} files; base {base}; adapter {args.adapter}")
    print("| model | decoding speed | vs base | files falling back | words | WER |\n|---|---|---|---|---|---|")
    first = None
    for name, spec, merge in (("base", base, False), ("adapter, unmerged", args.adapter, False),
                              ("adapter, merged", args.adapter, True)):
        r = measure(spec, merge, rows, args.language)
        first = first or r["speed"]
        print(f"| {name} | {r['speed']:.1f}x | {r['speed'] / first:.2f} | {r['fallback_files']} | {r['words']} "
              f"| {r['wer'] * 100:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
