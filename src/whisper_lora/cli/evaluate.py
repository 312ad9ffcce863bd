"""`whisper-lora evaluate --model SPEC [--model SPEC2 ...] --data MANIFEST`: WER/CER side by side."""

from ..evaluate import EvaluateOptions, evaluate
from .transcribe import add_glossary_argument, add_lm_arguments
from ..scoring.report import markdown_table, results_table


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="WER/CER of one or more models on a manifest, with per-utterance CSVs and a report",
        description="Transcribe a manifest with each model and score it: WER and CER, raw and normalised "
                    "(Whisper's English normaliser for English; Chinese by CER without punctuation, "
                    "Traditional mapped to Simplified), with substitution/deletion/insertion counts. "
                    "Give the base model first and the fine-tuned one next for a before/after table. "
                    "With --output_dir: utterances-MODEL.csv, results.json, report.md and report.html "
                    "(with training curves for training output folders).")
    p.add_argument("--model", dest="models", action="append", required=True, metavar="SPEC",
                   help="model spec (repeat for a side-by-side table): training output folder, merged or "
                        "HF folder, faster-whisper folder, hub id, bundled:tiny.en, ...")
    p.add_argument("--data", required=True, metavar="MANIFEST", help=".json list or .jsonl with audio_path and text")
    p.add_argument("--language", default=None,
                   help="language of all rows (code or name); default: each row's, else guessed from its text")
    p.add_argument("--output_dir", default=None, help="folder for CSVs and reports (default: print only)")
    p.add_argument("--batch_size", type=int, default=16, help="files decoded together (default: %(default)s)")
    p.add_argument("--beam_size", type=int, default=1, help="1: greedy decoding (default); more: beam search")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="arithmetic (default: auto: on a CPU fp32 with the output projection in int8 and, "
                        "where the CPU has bf16 instructions, the encoder in bf16; on a GPU "
                        "bf16 or fp16; fp32: float32 throughout)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.add_argument("--cache_dir", default=None, help="cache of downloaded and converted models")
    p.add_argument("--max_samples", type=int, default=None, help="evaluate the first N rows only")
    p.add_argument("--no_pack", dest="pack", action="store_false",
                   help="decode each clip in a window of its own (default: several clips share a window, as "
                        "`transcribe` decodes them, when the language is known)")
    p.add_argument("--worst", type=int, default=10, help="worst utterances listed per model (default: %(default)s)")
    add_glossary_argument(p)
    add_lm_arguments(p, several_weights=True)
    p.set_defaults(func=run)


def run(args) -> int:
    evaluation = evaluate(EvaluateOptions(
        models=tuple(args.models), data=args.data, language=args.language, output_dir=args.output_dir,
        batch_size=args.batch_size, beam_size=args.beam_size, precision=args.precision, device=args.device,
        cache_dir=args.cache_dir, max_samples=args.max_samples, worst=args.worst, pack=args.pack,
        glossary=args.glossary, lm=args.lm, lm_weights=args.lm_weight, lm_bonus=args.lm_bonus))
    print(markdown_table(results_table(evaluation)))
    for name, path in evaluation.files.items():
        if name in ("report.html", "report.md", "results.json"):
            print(f"{name}: {path}")
    return 0
