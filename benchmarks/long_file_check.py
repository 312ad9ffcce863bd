"""A long file transcribed whole against its sentences transcribed one by one.

    python benchmarks/long_file_check.py --data /tmp/demo_en/data MODEL [MODEL ...] [--backend hf|ct2]

--data is a folder from whisper_lora.synthetic.datasets.build_dataset; its long.json holds one long WAV of
joined sentences with each sentence's start and end. The one-by-one clips are cut from that same
WAV (each sentence with 0.3 s either side), so both runs hear exactly the same speech. Prints per
model: WER of the whole file, WER of the sentences one by one, their ratio, whether every
sentence's words appear in order, whether segment times increase, and where the last segment ends.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def words(text: str) -> list[str]:
    from whisper_lora.scoring.metrics import normalize

    return normalize(text, "en").split()


def in_order(sentences: list[str], transcript: str) -> int:
    """How many sentences are found, in order: each one's normalised words as a run of the
    transcript's words, at least 60% of them matching, searched after the previous one."""
    said = words(transcript)
    found, position = 0, 0
    for sentence in sentences:
        want = words(sentence)
        best, best_at = 0.0, None
        for start in range(position, max(position, len(said) - len(want)) + 1):
            window = said[start:start + len(want)]
            score = sum(a == b for a, b in zip(window, want)) / max(1, len(want))
            if score > best:
                best, best_at = score, start
        if best >= 0.6:
            found += 1
            position = best_at + len(want)
    return found


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--backend", default="auto")
    args = p.parse_args()

    from whisper_lora.audio import SAMPLE_RATE, load_audio
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.transcribe import TranscribeOptions, Transcriber

    row = read_manifest(Path(args.data) / "long.json")[0]
    audio = load_audio(row.audio_path)
    duration = len(audio) / SAMPLE_RATE
    sentences = [s["text"] for s in row.segments]
    clips = [audio[max(0, int((s["start"] - 0.3) * SAMPLE_RATE)):int((s["end"] + 0.3) * SAMPLE_RATE)]
             for s in row.segments]
    print(f"{row.audio_path}: {duration:.1f} s, {len(sentences)} sentences")
    for spec in args.models:
        transcriber = Transcriber.from_spec(spec, TranscribeOptions(language="en", backend=args.backend))
        whole = transcriber.transcribe_array(audio)
        one_by_one = [transcriber.transcribe_array(c).text for c in clips]
        wer_whole = error_rates([row.text], [whole.text], "en").wer
        wer_single = error_rates(sentences, one_by_one, "en").wer
        starts = [s.start for s in whole.segments]
        increasing = all(b > a for a, b in zip(starts, starts[1:]))
        print(f"{spec}: WER whole {wer_whole * 100:.1f}%, one by one {wer_single * 100:.1f}% "
              f"(ratio {wer_whole / wer_single if wer_single else float('inf'):.2f}); "
              f"{in_order(sentences, whole.text)}/{len(sentences)} sentences found in order; "
              f"{len(whole.segments)} segments, start times increasing: {increasing}; "
              f"last segment {whole.segments[-1].start:.1f}-{whole.segments[-1].end:.1f} s of {duration:.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
