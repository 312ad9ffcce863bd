"""`whisper-lora train` and whisper_lora_finetune.py: the original README's training flags and more.

Both parse the same flags (add_arguments) into TrainOptions and call whisper_lora.train.train."""

from __future__ import annotations

import argparse

from ..training.options import DEFAULT_LORA_MODULES, DEFAULT_TIMESTAMP_SHARE, LORA_MODULES, TrainOptions

DESCRIPTION = ("Fine-tune Whisper with LoRA adapters on a JSON/JSONL manifest of audio files and transcripts. "
               "Writes the adapter, processor, configs, metrics and TensorBoard logs to --output_dir.")


def add_arguments(p: argparse.ArgumentParser, datasets: bool = False) -> None:
    """Every TrainOptions field as a flag, in the groups --help shows. One add_argument per flag, so
    longer than most functions: a flat list is the easiest to read against TrainOptions.

    datasets=True (`whisper-lora train`) adds the Hugging Face dataset flags, with which
    --train_file is optional; whisper_lora_finetune.py keeps the original README's flags."""
    d = TrainOptions.__dataclass_fields__  # defaults come from the dataclass: one source of truth

    def default(name):
        return d[name].default

    g = p.add_argument_group("model")
    g.add_argument("--model_name_or_path", required=True,
                   help="base model: hub id (openai/whisper-small), local HF folder, faster-whisper folder, "
                        "openai .pt file, or bundled:tiny.en / bundled:base (offline)")
    g.add_argument("--cache_dir", help="where hub downloads and converted models are kept")

    g = p.add_argument_group("data")
    g.add_argument("--train_file", required=not datasets,
                   help="training manifest (.json list or .jsonl): audio_path, text"
                        + (", or a Hugging Face dataset folder written by save_to_disk" if datasets else ""))
    g.add_argument("--validation_file", help="validation manifest: loss and WER/CER every --eval_steps")
    g.add_argument("--max_train_samples", type=int, help="use at most this many training rows")
    g.add_argument("--max_eval_samples", type=int, help="use at most this many validation rows")
    g.add_argument("--language", help="language of the speech (en, zh, ...); a row's own 'language' wins")
    g.add_argument("--task", default=default("task"), choices=("transcribe", "translate"),
                   help="transcribe, or translate into English (default: %(default)s)")
    g.add_argument("--timestamps", action="store_true",
                   help="train every target with timestamp tokens (a row's segments, else one over its speech)")
    g.add_argument("--timestamp_share", type=float,
                   help=f"share of targets with timestamp tokens (default: 1 with --timestamps, else "
                        f"{DEFAULT_TIMESTAMP_SHARE}, which keeps the model's timestamps working)")
    g.add_argument("--max_duration_in_seconds", type=float, default=default("max_duration_in_seconds"),
                   help="drop clips longer than this (default: %(default)g, Whisper's window)")
    g.add_argument("--min_duration_in_seconds", type=float, default=default("min_duration_in_seconds"),
                   help="drop clips shorter than this (default: %(default)g)")
    g.add_argument("--max_label_length", type=int, default=default("max_label_length"),
                   help="drop rows whose label is longer, in tokens (default: %(default)s, the decoder's limit)")
    g.add_argument("--strict", action="store_true", help="fail on any bad row instead of dropping it")
    g.add_argument("--glossary_training", action="store_true",
                   help="glossary-aware training: some clips get a prompt listing a few of their rarer words among "
                        "distractors (sometimes none of theirs), written as `transcribe --glossary` writes its "
                        "prompts, with no loss on the prompt, so the model learns to use such a list")
    g.add_argument("--glossary", metavar="TXT",
                   help="domain terms, one per line: listed in the prompts of the clips that say them and drawn "
                        "as the distractors; turns --glossary_training on")
    g.add_argument("--prompt_share", type=float, default=default("prompt_share"),
                   help="share of training clips that get a prompt in glossary-aware training (default: %(default)g)")
    g.add_argument("--num_workers", type=int,
                   help="processes that decode audio while training (default: 0 on CPU, up to 8 with a GPU)")

    if datasets:
        add_dataset_arguments(p)

    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=int, default=default("lora_r"),
                   help="adapter rank, 4-64; larger means more parameters (default: %(default)s)")
    g.add_argument("--lora_alpha", type=int, default=default("lora_alpha"),
                   help="adapter scale numerator, usually 2-4x the rank (default: %(default)s)")
    g.add_argument("--lora_dropout", type=float, default=default("lora_dropout"),
                   help="dropout on the adapters, 0.05-0.1 (default: %(default)s)")
    g.add_argument("--lora_target_modules", nargs="+", default=list(DEFAULT_LORA_MODULES), metavar="MODULE",
                   help=f"layers that get adapters, in encoder and decoder; any of {' '.join(LORA_MODULES)} "
                        "(default: %(default)s)")
    g.add_argument("--freeze_encoder", action="store_true",
                   help="adapters in the decoder only (faster; learns words and style, not a new voice)")
    g.add_argument("--freeze_decoder", action="store_true",
                   help="adapters in the encoder only: the decoder (Whisper's language model) stays as it is; "
                        "faster steps, but on real Dutch speech it learned less than the default")
    g.add_argument("--use_rslora", action="store_true",
                   help="rank-stabilised LoRA: scale adapters by alpha/sqrt(r) instead of alpha/r")
    g.add_argument("--use_dora", action="store_true",
                   help="DoRA: learn each adapted weight's magnitude and direction apart (slower steps)")
    g.add_argument("--use_adalora", action="store_true",
                   help="AdaLoRA: adapters start at --lora_r and the rank budget moves, while training, to the layers "
                        "that need it most")
    g.add_argument("--adalora_target_r", type=int, metavar="R",
                   help="with --use_adalora: the average rank the adapters end at (default: half of --lora_r)")
    g.add_argument("--no_pack_clips", dest="pack_clips", action="store_false", default=default("pack_clips"),
                   help="one clip per 30-s encoder window instead of packing each batch's clips together")

    g = p.add_argument_group("augmentation (training clips only)")
    g.add_argument("--spec_augment", action="store_true",
                   help="SpecAugment: mask runs of time steps and mel bins of the encoder's input while training")
    g.add_argument("--mask_time_prob", type=float, default=default("mask_time_prob"),
                   help="with --spec_augment: about this share of frames masked (default: %(default)g)")
    g.add_argument("--mask_feature_prob", type=float, default=default("mask_feature_prob"),
                   help="with --spec_augment: about this share of mel bins masked (default: %(default)g)")
    g.add_argument("--speed_perturb", action="store_true",
                   help="play each clip at 0.9x, 1.0x or 1.1x speed, drawn anew every epoch")
    g.add_argument("--noise_snr", type=float, metavar="DB",
                   help="add white noise to half the clips at DB to DB+20 dB signal-to-noise (10 is usual)")

    g = p.add_argument_group("training")
    g.add_argument("--output_dir", required=True, help="where the adapter, logs and checkpoints go")
    g.add_argument("--overwrite_output_dir", action="store_true",
                   help="start over in an --output_dir that holds checkpoints of an earlier run")
    g.add_argument("--num_train_epochs", type=float, default=default("num_train_epochs"),
                   help="passes over the training set (default: %(default)g)")
    g.add_argument("--max_steps", type=int, default=default("max_steps"),
                   help="optimizer steps; overrides --num_train_epochs when positive")
    g.add_argument("--per_device_train_batch_size", type=int, default=default("per_device_train_batch_size"),
                   help="clips per step on each device (default: %(default)s)")
    g.add_argument("--per_device_eval_batch_size", type=int, help="clips per validation batch (default: as training)")
    g.add_argument("--gradient_accumulation_steps", type=int, default=default("gradient_accumulation_steps"),
                   help="batches summed into one optimizer step (default: %(default)s)")
    g.add_argument("--learning_rate", type=float, default=default("learning_rate"),
                   help="peak learning rate (default: %(default)g)")
    g.add_argument("--weight_decay", type=float, default=default("weight_decay"), help="AdamW weight decay")
    g.add_argument("--warmup_steps", type=float, default=default("warmup_steps"),
                   help="linear warm-up: steps, or a fraction of all steps when below 1 (default: %(default)g)")
    g.add_argument("--lr_scheduler_type", default=default("lr_scheduler_type"),
                   help="learning rate schedule after warm-up (default: %(default)s)")
    g.add_argument("--max_grad_norm", type=float, default=default("max_grad_norm"), help="gradient clipping")
    g.add_argument("--label_smoothing", type=float, default=default("label_smoothing"),
                   help="label smoothing of the cross-entropy, 0-0.2 (default: %(default)g)")
    g.add_argument("--early_stopping_patience", type=int, metavar="N",
                   help="stop when validation WER/CER has not improved for N evaluations")
    g.add_argument("--fp16", action="store_true", help="float16 mixed precision (CUDA GPUs; on a CPU: fp32)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (Ampere+ GPUs, CPUs with bf16)")
    g.add_argument("--fp32", action="store_true",
                   help="full precision even on a CPU with bf16 instructions (where the default is bf16 autocast)")
    g.add_argument("--gradient_checkpointing", action="store_true",
                   help="recompute activations during backward: less memory, slower")
    g.add_argument("--load_in_8bit", action="store_true",
                   help="hold the frozen base model in 8 bits (bitsandbytes, CUDA GPU; pip install 'whisper-lora[kbit]')")
    g.add_argument("--load_in_4bit", action="store_true",
                   help="hold the frozen base model in 4 bits, QLoRA's NF4 (bitsandbytes, CUDA GPU)")
    g.add_argument("--seed", type=int, default=default("seed"), help="random seed (default: %(default)s)")
    g.add_argument("--resume_from_checkpoint", metavar="PATH|latest",
                   help="continue from a checkpoint-N folder, or the newest complete one in --output_dir")

    g = p.add_argument_group("logging, evaluation, checkpoints")
    g.add_argument("--logging_steps", type=int, default=default("logging_steps"),
                   help="log loss every N steps (default: %(default)s)")
    g.add_argument("--eval_steps", type=int, help="evaluate every N steps (default: --save_steps)")
    g.add_argument("--save_steps", type=int, default=default("save_steps"),
                   help="save a checkpoint every N steps (default: %(default)s)")
    g.add_argument("--save_total_limit", type=int, default=default("save_total_limit"),
                   help="checkpoints kept (default: %(default)s; the best is always kept)")
    g.add_argument("--generation_max_length", type=int, default=default("generation_max_length"),
                   help="most tokens generated per validation clip (default: %(default)s)")
    g.add_argument("--generation_num_beams", type=int, default=default("generation_num_beams"),
                   help="beams for validation transcripts (default: %(default)s, greedy)")
    g.add_argument("--use_wandb", action="store_true", help="log to Weights & Biases too")
    g.add_argument("--wandb_project", default=default("wandb_project"), help="W&B project (default: %(default)s)")
    g.add_argument("--run_name", help="run name in W&B and TensorBoard")


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Hugging Face datasets (instead of --train_file)")
    g.add_argument("--dataset_name", metavar="NAME",
                   help="a dataset for load_dataset: hub id (online, or from its cache offline), a local folder "
                        "of data files, or a save_to_disk folder")
    g.add_argument("--dataset_config", metavar="C", help="the dataset's configuration (Common Voice: the language)")
    g.add_argument("--train_split", default="train", help="split to train on (default: %(default)s)")
    g.add_argument("--eval_split", help="split to validate on (e.g. validation, test); default: none")
    g.add_argument("--audio_column", default="audio", help="audio column (default: %(default)s)")
    g.add_argument("--text_column", help="transcript column (default: the first of text, sentence, transcript, "
                                         "transcription, normalized_text the dataset has)")
    g.add_argument("--streaming", action="store_true",
                   help="stream the dataset instead of downloading it whole (needs --max_steps)")


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """TrainOptions from parsed flags; raises OptionsError on a bad value."""
    names = TrainOptions.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in names}
    values["lora_target_modules"] = tuple(m for item in args.lora_target_modules for m in item.split(",") if m)
    return TrainOptions(**values)


def add_parser(subparsers):
    p = subparsers.add_parser("train", help="fine-tune Whisper with LoRA", description=DESCRIPTION)
    add_arguments(p, datasets=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train

    train(options_from_args(args))
    return 0
