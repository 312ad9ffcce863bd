"""Export a model to whisper.cpp's ggml format (f16, q8_0, q5_0), transcribe espeak-ng clips with
whisper.cpp (through pywhispercpp, whose wheel ships it) and with our transformers backend in
float32, and compare: identical transcripts file by file, WER of each, wall time and realtime factor.

    python benchmarks/ggml_check.py [--model bundled:tiny.en] [--n 12] [--threads 2] [--work DIR]

--model may be a training output folder (the export merges the adapter). Both decoders are greedy,
without timestamps, without temperature fallback, one file at a time (ours with --no_pack), with
the same suppressed tokens, so differences come from the weights and arithmetic alone. Times
cover decoding only (models loaded before), with the same number of threads for both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def clips(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """n hand-written evaluation sentences spoken by espeak-ng (cached in folder)."""
    from whisper_lora.synthetic.sentences import read_sentences
    from whisper_lora.synthetic.tts import synthesize_cached

    texts = read_sentences("en", "eval")[:n]
    return [str(synthesize_cached(t, folder)) for t in texts], texts


def ours(spec: str, paths: list[str], language: str, threads: int) -> tuple[list[str], float]:
    import torch

    from whisper_lora import TranscribeOptions, Transcriber

    torch.set_num_threads(threads)
    opts = TranscribeOptions(language=language, temperatures=(0.0,), beam_size=1, precision="fp32",
                             pack=False, backend="hf")
    transcriber = Transcriber.from_spec(spec, opts)
    start = time.perf_counter()
    texts = [r.text.strip() for r in transcriber.transcribe_files(paths)]
    return texts, time.perf_counter() - start


def whisper_cpp(model_file: Path, audios: list, language: str, threads: int) -> tuple[list[str], float]:
    """Transcripts by whisper.cpp with our decoding settings; raises if it refuses the file."""
    from pywhispercpp.model import Model

    log = model_file.with_suffix(".log")
    model = Model(str(model_file), redirect_whispercpp_logs_to=str(log), n_threads=threads,
                  print_progress=False, print_realtime=False)
    if "failed to load model" in log.read_text(errors="replace"):
        raise RuntimeError(f"whisper.cpp cannot load {model_file}:\n{log.read_text(errors='replace')[-2000:]}")
    settings = {"language": language, "no_timestamps": True, "single_segment": True, "temperature": 0.0,
                "temperature_inc": 0.0, "suppress_nst": True, "no_context": True}
    start = time.perf_counter()
    texts = ["".join(s.text for s in model.transcribe(audio, **settings)).strip() for audio in audios]
    return texts, time.perf_counter() - start


def main() -> int:
    from whisper_lora.audio import load_audio
    from whisper_lora.export import ExportOptions, export
    from whisper_lora.scoring.metrics import error_rates

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bundled:tiny.en", help="model spec or training output folder")
    p.add_argument("--n", type=int, default=12, help="clips spoken and compared")
    p.add_argument("--language", default="en")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both decoders")
    p.add_argument("--quantizations", nargs="+", default=["f16", "q8_0", "q5_0"])
    p.add_argument("--work", default=None, help="folder for the clips and the ggml files")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ggml-check-"))
    paths, refs = clips(work / "clips", args.n)
    audios = [load_audio(path) for path in paths]
    seconds = sum(len(a) for a in audios) / 16000

    texts, times, sizes = {}, {}, {}
    texts["ours hf fp32"], times["ours hf fp32"] = ours(args.model, paths, args.language, args.threads)
    for quantization in args.quantizations:
        file = export(ExportOptions(model_path=args.model, output_dir=str(work / "ggml"), format="ggml",
                                    quantization=quantization, overwrite=True))
        name = f"whisper.cpp {quantization}"
        sizes[name] = file.stat().st_size / 1e6
        texts[name], times[name] = whisper_cpp(file, audios, args.language, args.threads)

    print(f"{args.model}: {len(paths)} clips, {seconds:.1f} s of speech, {args.threads} threads; files in {work}")
    print(f"{'transcripts':<22} {'WER':>6} {'same as ours':>13} {'decode s':>9} {'RTF':>7} {'file MB':>8}")
    for name, hyps in texts.items():
        same = sum(a == b for a, b in zip(hyps, texts["ours hf fp32"]))
        size = f"{sizes[name]:8.1f}" if name in sizes else f"{'':>8}"
        print(f"{name:<22} {error_rates(refs, hyps, args.language).wer * 100:5.1f}% {same:>6}/{len(paths):<6} "
              f"{times[name]:9.2f} {times[name] / seconds:7.3f} {size}")
    for name, hyps in texts.items():
        for i, (a, b) in enumerate(zip(hyps, texts["ours hf fp32"])):
            if a != b:
                print(f"  {name}, clip {i}: {a!r}\n  {'ours':>{len(name)}}, clip {i}: {b!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
