"""`whisper-lora lm build`: a word n-gram language model (ARPA) from the text a user has, for
`transcribe --lm` / `evaluate --lm`.

    whisper-lora lm build --text corpus.txt --output domain.arpa
    whisper-lora lm build --text train.jsonl --output domain.arpa --order 4
"""

from __future__ import annotations

from ..data.lm import DEFAULT_ORDER


def add_parser(subparsers):
    p = subparsers.add_parser("lm", help="build a word n-gram language model from text (for --lm)",
                              description="Language models for decoding with --lm.")
    sub = p.add_subparsers(dest="lm_command", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="an ARPA file from a text file (one sentence per line) or a manifest",
                       description="Estimate an interpolated Kneser-Ney word n-gram model (as KenLM's lmplz does) "
                                   "from a UTF-8 text file, one sentence per line, or from the `text` of a "
                                   ".json/.jsonl manifest, and write it as ARPA. Words are lower-cased and "
                                   "punctuation dropped, as --lm reads Whisper's text.")
    b.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text, one sentence per line, or a manifest")
    b.add_argument("--output", required=True, metavar="ARPA", help="where the model is written (atomically)")
    b.add_argument("--order", type=int, default=DEFAULT_ORDER, help="n-gram order (default: %(default)s)")
    b.set_defaults(func=run)


def run(args) -> int:
    from ..data.lm import build_file

    path = build_file(args.text, args.output, args.order)
    print(f"{path}: {args.order}-gram model")
    return 0
