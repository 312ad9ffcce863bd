"""`whisper-lora align-heads`: check a model's alignment heads on clips with transcripts, and find better ones.

    whisper-lora align-heads --model ./output --data data/val.json
    whisper-lora align-heads --model ./output --data data/val.json --save
"""

from __future__ import annotations


def add_parser(subparsers):
    p = subparsers.add_parser(
        "align-heads", help="check that word timestamps still align after fine-tuning; find the heads that do",
        description="Join the manifest's clips into 30-s windows with pauses between them, and measure how far "
                    "each cross-attention head (and the model's alignment heads together) places each clip's start "
                    "from where its speech starts. --save writes the best heads into the model folder's "
                    "generation_config.json, used by --word_timestamps, merge and export.")
    p.add_argument("--model", required=True, metavar="SPEC", help="a training output folder, an HF model folder, "
                   "or any model spec (without --save)")
    p.add_argument("--data", required=True, metavar="MANIFEST", help="clips with transcripts (JSON or JSONL manifest)")
    p.add_argument("--language", help="language of the clips (a multilingual model needs it unless the rows say)")
    p.add_argument("--top", type=int, default=8, help="how many heads the new set has (default: %(default)s)")
    p.add_argument("--max_clips", type=int, default=120, help="clips read from the manifest (default: %(default)s)")
    p.add_argument("--save", action="store_true", help="write the heads found into the model folder")
    p.add_argument("--cache_dir", help="where hub downloads and converted models are cached")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..decoding.align_heads import align_heads

    report = align_heads(args.model, args.data, language=args.language, top=args.top, max_clips=args.max_clips,
                         save=args.save, cache_dir=args.cache_dir)
    print(report.describe())
    return 0
