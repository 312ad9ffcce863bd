"""--vad on a long file with long pauses: wall time, realtime factor, WER, and the segments written
inside the music, noise and silence, with VAD off and on.

    python benchmarks/vad_check.py [--model bundled:tiny.en] [--backends hf,ct2] [--out DIR]

The file (built once into --out, about 4.5 minutes): groups of two or three hand-written
evaluation sentences spoken by espeak-ng, 0.5 s apart, separated by long stretches of non-speech:
chords that change every half second (music-like), white noise, both mixed, and digital silence,
6 to 60 s each, at -30 to -35 dBFS (far above the -50 dBFS quiet check, which would otherwise skip
them). Decoded whole by each backend and long form, --vad off and on. A segment "in non-speech"
overlaps a stretch by more than a second away from its ends; "resume" is the largest distance
between where the speech resumes after a stretch and the start of the first segment after it.
The ct2 backend's batched long form (faster-whisper's BatchedInferencePipeline) always uses VAD,
so it is run once. The rows "ct2, whisper-lora's VAD" decode with the CTranslate2 model but plan
with this project's VAD code instead of faster-whisper's: batched, the pieces of
long_form.decode_pieces through CT2Backend.decode_batch; sequential, vad.decode_speech_only
around faster-whisper's transcribe (its own VAD off).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
# (kind, seconds, level dBFS) of each stretch between two groups of sentences
STRETCHES = [("music", 60, -30), ("silence", 40, None), ("noise", 25, -35), ("music", 12, -30),
             ("music+noise", 45, -30), ("noise", 6, -35), ("music", 20, -30)]
SLACK = 1.0  # seconds at either end of a stretch where a segment may still run into it


def non_speech(kind: str, seconds: float, level_db: float | None, rng) -> np.ndarray:
    n = int(seconds * SR)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    t = np.arange(n) / SR
    out = np.zeros(n)
    if "music" in kind:
        chords = np.zeros(n)
        for start in range(0, n, SR // 2):
            part = slice(start, start + SR // 2)
            for f in rng.choice([220.0, 277.2, 329.6, 392.0, 440.0, 523.3, 659.3], 3, replace=False):
                chords[part] += np.sin(2 * np.pi * f * t[part])
        out += chords / np.sqrt(np.mean(chords ** 2))
    if "noise" in kind:
        out += rng.normal(0.0, 1.0, n)
    return (out / np.sqrt(np.mean(out ** 2)) * 10 ** (level_db / 20)).astype(np.float32)


def build_file(out: Path):
    """(audio, the sentences in order, the (start, end) seconds of each non-speech stretch)."""
    from whisper_lora.audio import load_audio
    from whisper_lora.synthetic.sentences import read_sentences
    from whisper_lora.synthetic.tts import synthesize_cached

    rng = np.random.default_rng(0)
    sentences = read_sentences("en", "eval")
    pause = np.zeros(SR // 2, dtype=np.float32)
    parts, spoken, stretches, position, k = [], [], [], 0, 0
    for g in range(len(STRETCHES) + 1):
        for text in sentences[k:k + 2 + g % 2]:
            clip = load_audio(synthesize_cached(text, out))
            parts += [clip, pause]
            spoken.append(text)
            position += len(clip) + len(pause)
        k += 2 + g % 2
        if g < len(STRETCHES):
            stretch = non_speech(*STRETCHES[g], rng)
            stretches.append((position / SR, (position + len(stretch)) / SR))
            parts.append(stretch)
            position += len(stretch)
    return np.concatenate(parts), spoken, stretches


def count_in_non_speech(segments, stretches) -> int:
    return sum(any(seg.end > a + SLACK and seg.start < b - SLACK for a, b in stretches) for seg in segments)


def resume_error(segments, stretches) -> float:
    """Largest |start of the first segment after a stretch - end of the stretch|, seconds."""
    worst = 0.0
    for _, b in stretches:
        after = [seg for seg in segments if seg.end > b]
        worst = max(worst, abs(after[0].start - b) if after else float("inf"))
    return worst


def ours_ct2(backend, audio: np.ndarray, long_form: str):
    """The CTranslate2 backend (its options with vad off) planned by this project's VAD code."""
    from dataclasses import replace

    from whisper_lora.decoding import long_form as lf, vad
    from whisper_lora.decoding.results import FileResult, join_segments

    if long_form == "batched":
        segments = lf.decode_pieces([audio], ["en"], backend.decode_batch, replace(backend.options, vad=True))[0]
    else:
        segments = vad.decode_speech_only([audio], ["en"], lambda speech, langs: [
            backend._sequential(a, code, None) for a, code in zip(speech, langs)])[0].segments
    return FileResult("<array>", join_segments(segments), segments, "en", None, len(audio) / SR)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bundled:tiny.en")
    p.add_argument("--backends", default="hf,ct2", help="comma-separated: hf, ct2")
    p.add_argument("--out", default=str(ROOT / "demo_output" / "vad-check"))
    args = p.parse_args()

    from whisper_lora import load_model
    from whisper_lora.decoding import vad
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.transcribe import TranscribeOptions, Transcriber

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audio, sentences, stretches = build_file(out)
    duration = len(audio) / SR
    silent = sum(b - a for a, b in stretches)
    print(f"{duration:.1f} s: {len(sentences)} sentences in {len(STRETCHES) + 1} groups, "
          f"{silent:.0f} s of non-speech in {len(stretches)} stretches ({', '.join(k for k, _, _ in STRETCHES)})")
    t = time.perf_counter()
    regions = vad.speech_regions(audio)
    print(f"Silero VAD alone: {time.perf_counter() - t:.2f} s, {len(regions)} speech regions, "
          f"{sum(b - a for a, b in regions) / SR:.1f} s of speech")
    reference = [" ".join(sentences)]
    warm = audio[:int(5 * SR)]

    runs = []
    backends = args.backends.split(",")
    if "hf" in backends:
        model, processor = load_model(args.model)
        runs += [(("hf", lf, v), lambda o: Transcriber.from_model(model, processor, o, args.model))
                 for lf in ("batched", "sequential") for v in (False, True)]
    if "ct2" in backends:
        runs += [(("ct2", lf, v), lambda o: Transcriber.from_spec(args.model, o))
                 for lf, v in (("batched", True), ("sequential", False), ("sequential", True))]
    if "ct2" in backends:
        runs += [(("ct2, whisper-lora's VAD", lf, True), lambda o: Transcriber.from_spec(args.model, o))
                 for lf in ("batched", "sequential")]
    print("| backend | long form | --vad | wall s | x realtime | WER | segments in non-speech | resume error s |")
    print("|---|---|---|---|---|---|---|---|")
    for (backend, long_form, on), make in runs:
        ours = backend.startswith("ct2,")
        # timestamps on: faster-whisper decodes long audio without them unless asked (a segment
        # per 30-s window, which would span the stretches whatever the VAD)
        transcriber = make(TranscribeOptions(language="en", backend=backend[:3], long_form=long_form,
                                             vad=on and not ours, return_timestamps=True))
        transcriber.transcribe_array(warm)  # first-call costs (int8 head, threads) out of the timing
        t = time.perf_counter()
        result = ours_ct2(transcriber.backend, audio, long_form) if ours else transcriber.transcribe_array(audio)
        wall = time.perf_counter() - t
        wer = error_rates(reference, [result.text], "en").wer
        vad_shown = "on" if on else "off"
        if backend == "ct2" and long_form == "batched":
            vad_shown = "always (faster-whisper)"
        print(f"| {backend} | {long_form} | {vad_shown} | {wall:.1f} | {duration / wall:.1f} | {wer * 100:.1f}% "
              f"| {count_in_non_speech(result.segments, stretches)} | {resume_error(result.segments, stretches):.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
