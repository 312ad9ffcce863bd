"""`whisper-lora` command. Each subcommand lives in its own module here with two functions:
`add_parser(subparsers)` declares its flags and `run(args)` calls one library function."""

import argparse
import importlib
import logging
import sys

from ..errors import WhisperLoraError

# subcommand -> module under whisper_lora.cli
COMMANDS = {
    "train": "train",
    "transcribe": "transcribe",
    "validate": "validate",
    "evaluate": "evaluate",
    "merge": "merge",
    "export": "export",
    "demo": "demo",
    "serve": "serve",
    "stream": "stream",
    "prepare": "prepare",
    "align-heads": "align_heads",
    "lm": "lm",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-lora",
        description="Fine-tune Whisper with LoRA; transcribe, evaluate, merge and export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue  # subcommand not built yet
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args)


def run_command(func, args) -> int:
    """func(args) as a command: its exit status, or 1 with the message of a WhisperLoraError
    (no traceback: the message says what to do), 130 on Ctrl-C."""
    try:
        return int(func(args) or 0)
    except WhisperLoraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
