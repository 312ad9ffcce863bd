#!/usr/bin/env python
"""Transcribe with a fine-tuned Whisper: the original README's inference command.

    python whisper_lora_inference.py --model_path ./output --audio_path audio/test.wav \
        --language zh --return_timestamps
    python whisper_lora_inference.py --model_path ./output --audio_list audio_list.txt \
        --output_file results.json --language zh

--model_path also takes bundled:tiny.en / bundled:base, a merged or Hugging Face model folder,
a CTranslate2 folder or a hub id. All flags: python whisper_lora_inference.py --help.
Same as `whisper-lora transcribe`."""

import argparse
import logging
import sys


def main(argv=None) -> int:
    from whisper_lora.cli import run_command
    from whisper_lora.cli.transcribe import add_arguments, run

    parser = argparse.ArgumentParser(description="Transcribe audio with Whisper and a LoRA adapter.")
    add_arguments(parser, extended=False)
    args = parser.parse_args(argv)
    if not (args.audio_path or args.audio_list):
        parser.error("give --audio_path FILE or --audio_list TXT")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
