"""`whisper-lora transcribe`: the same command as whisper_lora_inference.py, plus positional files.

    whisper-lora transcribe --model bundled:tiny.en speech.wav
    whisper-lora transcribe --model ./output --audio_list list.txt --output_file results.json --language zh
"""

from __future__ import annotations

import argparse
import sys

from ..decoding.options import BACKENDS, DEVICES, LONG_FORMS, TASKS
from ..decoding.writers import FORMATS
from ..data.glossary import MAX_TERMS
from ..data.lm import DEFAULT_LM_BONUS, DEFAULT_LM_WEIGHT


def add_arguments(p: argparse.ArgumentParser, extended: bool = True) -> None:
    """The original README's inference flags; extended adds the whisper-lora extras
    (positional files, --model alias, --fp32, --cache_dir, --compute_type, --no_pack, --long_form,
    --word_timestamps, --initial_prompt, --hotwords, --vad, --resume, --quiet). Both run sharded
    under torchrun / accelerate launch (shards/): that needs no flag."""
    names = ["--model_path", "--model"] if extended else ["--model_path"]
    p.add_argument(*names, dest="model_path", required=True, metavar="SPEC",
                   help="a training output folder (base model + LoRA adapter), a merged or Hugging Face model "
                        "folder, a CTranslate2 folder, an openai .pt file, a hub id, or bundled:tiny.en / bundled:base")
    if extended:
        p.add_argument("files", nargs="*", metavar="FILE", help="audio files to transcribe")
    p.add_argument("--audio_path", action="append", metavar="FILE",
                   help="an audio file to transcribe (WAV, MP3, M4A, FLAC, ...); may be repeated")
    p.add_argument("--audio_list", metavar="TXT",
                   help="a text file with one audio path per line (relative to the list's folder; "
                        "blank and # lines skipped)")
    p.add_argument("--output_file", metavar="PATH",
                   help="write results here, in the format of its extension: .json .txt .tsv .srt .vtt "
                        "(srt/vtt with several inputs: one file per input in a folder named after PATH); "
                        "without it, transcripts are printed")
    p.add_argument("--output_format", choices=FORMATS, help="format of --output_file, whatever its extension")
    p.add_argument("--language", help="language spoken (zh, en, ja, ...); omitted: detected per file and reported")
    p.add_argument("--task", choices=TASKS, default="transcribe",
                   help="transcribe, or translate into English (multilingual models)")
    p.add_argument("--return_timestamps", action="store_true", help="segment start and end times")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda, then mps, then cpu")
    p.add_argument("--batch_size", type=int, default=16, help="files (or pieces of long files) decoded together (default: %(default)s)")
    p.add_argument("--beam_size", type=int, default=1, help="1 = greedy decoding (default); more = beam search")
    p.add_argument("--merge", action="store_true", default=True,
                   help="merge the LoRA adapter into the model first, for speed (the default)")
    p.add_argument("--no_merge", dest="merge", action="store_false",
                   help="decode with the adapter unmerged (peft), e.g. to compare")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="bfloat16 arithmetic")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                      help="float16 arithmetic (GPU; on CPU it falls back to the default with a warning)")
    if extended:
        prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                          help="float32 arithmetic throughout (the default on a CPU is float32 with the "
                               "output projection in int8, and the encoder in bf16 where the CPU has bf16 "
                               "instructions: faster, within noise of float32)")
    add_glossary_argument(p)
    add_lm_arguments(p)
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="hf (transformers) or ct2 (faster-whisper on a CTranslate2 folder); auto: ct2 for a "
                        "CTranslate2 folder, else hf")
    if extended:
        p.add_argument("--cache_dir", help="where hub downloads and converted models are cached")
        p.add_argument("--compute_type", help="CTranslate2 compute type for --backend ct2 (int8, float32, ...)")
        p.add_argument("--no_pack", dest="pack", action="store_false", default=True,
                       help="decode each short file in a window of its own, instead of packing several into each "
                            "30-second window when the language is known (given, or an English-only model)")
        p.add_argument("--pack", dest="pack", action="store_true", default=True, help=argparse.SUPPRESS)  # the default; old commands
        p.add_argument("--long_form", choices=LONG_FORMS, default="batched",
                       help="files over 30 s: batched (cut at pauses into pieces decoded together; default) or "
                            "sequential (30-second windows one after another, each prompted with the previous text)")
        p.add_argument("--word_timestamps", action="store_true",
                       help="start, end and probability of every word (json, tsv; srt/vtt cues follow the words); "
                            "turns --return_timestamps on")
        p.add_argument("--initial_prompt", metavar="TEXT",
                       help="text as if said just before the audio: names, spelling and style to follow "
                            "(every short file and batched piece; the first window in --long_form sequential)")
        p.add_argument("--hotwords", metavar="'W1, W2'",
                       help="domain terms to expect, put before every window of every file")
        p.add_argument("--vad", action="store_true",
                       help="voice activity detection (Silero VAD, bundled): decode only where there is speech, so "
                            "long silences, music and noise cost nothing and invent no text")
        p.add_argument("--resume", action="store_true",
                       help="keep each finished file in OUTPUT_FILE.parts/ as it is done, and skip those a killed "
                            "run left there (with torchrun too); needs --output_file")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(precision="auto")


def add_glossary_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--glossary", metavar="TXT",
                   help=f"domain terms, one per line (UTF-8; thousands allowed): each file is decoded, then again "
                        f"with the at most {MAX_TERMS} terms its text comes close to (spelt or as it sounds) in the "
                        "prompt (Whisper's prompt holds 223 tokens, and terms the audio does not say only distract "
                        "it); the second pass's words are kept where they write a term")


def add_lm_arguments(p: argparse.ArgumentParser, several_weights: bool = False) -> None:
    p.add_argument("--lm", metavar="ARPA",
                   help="a word n-gram language model (ARPA or KenLM file; `whisper-lora lm build --text FILE` makes "
                        "one from your text) fused into the search: each word gets --lm_weight times its log "
                        "probability under it, plus --lm_bonus; use it with --beam_size 5 (transformers backend)")
    if several_weights:
        p.add_argument("--lm_weight", type=_weights, default=(DEFAULT_LM_WEIGHT,), metavar="W[,W...]",
                       help=f"weight(s) of the language model: one table row each, to choose one on your "
                            f"validation data (default: {DEFAULT_LM_WEIGHT})")
    else:
        p.add_argument("--lm_weight", type=float, default=DEFAULT_LM_WEIGHT,
                       help="weight of the language model (default: %(default)s, chosen on Dutch validation "
                            "speech; `evaluate --lm_weight 0.1,0.3,0.5` compares several on your data)")
    p.add_argument("--lm_bonus", type=float, default=DEFAULT_LM_BONUS,
                   help="added per word with --lm, against the language model's bias to short text "
                        "(default: %(default)s)")


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 0.1,0.3,0.5") from None


def add_parser(subparsers):
    p = subparsers.add_parser(
        "transcribe", help="transcribe audio files with any model, adapter or export",
        description="Transcribe audio files; results in input order, one error entry per unreadable file, "
                    "exit status 1 when any file failed.")
    add_arguments(p, extended=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..transcribe import run_transcription
    from ..transcribe import TranscribeOptions, read_audio_list

    _quiet_transformers()
    options = TranscribeOptions(
        language=args.language, task=args.task, return_timestamps=args.return_timestamps, batch_size=args.batch_size,
        beam_size=args.beam_size, device=args.device, precision=args.precision, merge=args.merge,
        backend=args.backend, pack=getattr(args, "pack", True), cache_dir=getattr(args, "cache_dir", None),
        compute_type=getattr(args, "compute_type", None), long_form=getattr(args, "long_form", "batched"),
        word_timestamps=getattr(args, "word_timestamps", False), initial_prompt=getattr(args, "initial_prompt", None),
        hotwords=getattr(args, "hotwords", None), vad=getattr(args, "vad", False), glossary=args.glossary,
        lm=args.lm, lm_weight=args.lm_weight, lm_bonus=args.lm_bonus)
    paths = list(getattr(args, "files", None) or []) + list(args.audio_path or [])
    if args.audio_list:
        paths += read_audio_list(args.audio_list)
    summary = run_transcription(args.model_path, paths, options, output_file=args.output_file,
                                output_format=args.output_format, resume=getattr(args, "resume", False),
                                progress=not getattr(args, "quiet", False))
    if summary is None:
        return 0  # a rank other than 0 under torchrun: rank 0 reports for the job
    print(summary.describe(), file=sys.stderr)
    return 1 if summary.failed else 0


def _quiet_transformers() -> None:
    # transformers warns on every batched generate about options this package sets on purpose.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
