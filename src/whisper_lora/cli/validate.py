"""`whisper-lora validate MANIFEST...`: check every row of training manifests (or of a Hugging Face
dataset saved with save_to_disk) and print what is wrong."""

from ..audio import CHUNK_LENGTH
from ..data.hf_data import dataset_rows, is_saved_dataset
from ..data.validation import format_report, validate_manifest


def add_parser(subparsers):
    p = subparsers.add_parser(
        "validate", help="check a manifest: audio, text, keys, duplicates, lengths",
        description="Check every row of one or more manifests (JSON list or JSON Lines, or a Hugging Face "
                    "dataset folder written by save_to_disk) and list each problem with its row number, then a "
                    "summary. Exit status 1 when any row has an error.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="a .json or .jsonl manifest, or a saved dataset")
    p.add_argument("--max_seconds", type=float, default=float(CHUNK_LENGTH),
                   help="longest clip allowed, in seconds (default: %(default)g, Whisper's window)")
    p.add_argument("--quick", action="store_true",
                   help="read audio headers only instead of decoding every file (faster; misses damaged data)")
    p.add_argument("--split", default="train", help="split of a saved DatasetDict (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    status = 0
    for manifest in args.manifests:
        if is_saved_dataset(manifest):
            report, _ = dataset_rows(manifest, args.split, max_seconds=args.max_seconds, decode=not args.quick)
        else:
            report = validate_manifest(manifest, max_seconds=args.max_seconds, decode=not args.quick)
        print(format_report(report))
        status = status or int(not report.ok)
    return status
