"""`whisper-lora demo`: the whole job offline, with a before/after table."""

from ..demo import DemoOptions, run_demo


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="the main job: speech data, fine-tune, measure the gain (offline but for nl)",
                              description=__doc__)
    p.add_argument("--language", default="en", choices=["en", "zh", "nl"],
                   help="en: bundled tiny.en on English espeak-ng speech; zh: bundled base on Mandarin espeak-ng "
                        "speech (CER); nl: bundled base on real Dutch recordings of people (fetched from Debian)")
    p.add_argument("--quick", action="store_true", help="a short run that shows the pipeline (CI)")
    p.add_argument("--output_dir", default="demo_output", help="where data, adapter and report go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--glossary", metavar="TXT",
                   help="domain terms, one per line: the fine-tuned model is also measured decoding with them "
                        "(--language nl builds one for its held-out levels when none is given)")
    p.set_defaults(func=run)


def run(args) -> int:
    run_demo(DemoOptions(language=args.language, quick=args.quick, output_dir=args.output_dir, seed=args.seed,
                         epochs=args.epochs, glossary=args.glossary))
    return 0
