"""Merge a training output folder, export it to CTranslate2 (float32 and int8), and compare
transcripts file by file: base + adapter (transformers) vs merged (transformers) vs faster-whisper
run directly on each exported folder vs our own `--backend ct2` on the same folder.

    python benchmarks/export_check.py --model OUTPUT_DIR --data TEST_MANIFEST [--n 12] [--work DIR]

Every decoder is greedy, without timestamps and without temperature fallback, so differences
come from the weights and arithmetic alone. Prints per comparison how many files give identical
text, and the WER of each against the references.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def ours(spec: str, paths: list[str], **options) -> list[str]:
    from whisper_lora import TranscribeOptions, Transcriber

    opts = TranscribeOptions(temperatures=(0.0,), beam_size=1, **options)
    return [r.text for r in Transcriber.from_spec(spec, opts).transcribe_files(paths)]


def faster_whisper(folder: Path, paths: list[str], compute_type: str, language: str | None) -> list[str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type=compute_type)
    texts = []
    for path in paths:
        segments, _ = model.transcribe(path, beam_size=1, temperature=0.0, language=language,
                                       without_timestamps=True, condition_on_previous_text=False,
                                       vad_filter=False)
        texts.append(" ".join(s.text.strip() for s in segments).strip())
    return texts


def main() -> int:
    from whisper_lora.export import ExportOptions, export
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.export.merge import MergeOptions, merge
    from whisper_lora.scoring.metrics import error_rates

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="training output folder (base + adapter)")
    p.add_argument("--data", required=True, help="manifest of the files to compare")
    p.add_argument("--n", type=int, default=12, help="files taken from the manifest")
    p.add_argument("--language", default="en")
    p.add_argument("--work", default=None, help="folder for the merged and exported models")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="export-check-"))
    rows = read_manifest(args.data)[:args.n]
    paths, refs = [r.audio_path for r in rows], [r.text for r in rows]

    merged = merge(MergeOptions(model_path=args.model, output_dir=str(work / "merged"), overwrite=True))
    texts = {"adapter (hf)": ours(args.model, paths, language=args.language, backend="hf"),
             "merged (hf)": ours(str(merged), paths, language=args.language, backend="hf")}
    for quantization in ("float32", "int8"):
        folder = export(ExportOptions(model_path=str(merged), output_dir=str(work / f"ct2-{quantization}"),
                                      quantization=quantization, overwrite=True))
        texts[f"faster-whisper {quantization}"] = faster_whisper(folder, paths, quantization, args.language)
        texts[f"ours --backend ct2 {quantization}"] = ours(str(folder), paths, language=args.language,
                                                           backend="ct2", compute_type=quantization)

    print(f"{len(paths)} files from {args.data}; models in {work}")
    print(f"{'transcripts':<34} {'WER':>7}")
    for name, hyps in texts.items():
        print(f"{name:<34} {error_rates(refs, hyps, args.language).wer * 100:6.1f}%")
    pairs = [("merged (hf)", "adapter (hf)"),
             ("faster-whisper float32", "adapter (hf)"),
             ("faster-whisper float32", "ours --backend ct2 float32"),
             ("faster-whisper int8", "ours --backend ct2 int8"),
             ("faster-whisper int8", "adapter (hf)")]
    for a, b in pairs:
        same = sum(x == y for x, y in zip(texts[a], texts[b]))
        print(f"identical text, {a} vs {b}: {same}/{len(paths)}")
        for x, y in zip(texts[a], texts[b]):
            if x != y:
                print(f"    {x!r}\n    {y!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
