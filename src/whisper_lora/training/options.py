"""TrainOptions: every choice a fine-tuning run makes, checked before any model or audio is loaded.

Names and meanings follow the original README, Hugging Face TrainingArguments and peft's
LoraConfig, so a flag means what users of those tools expect. Building options checks values
and that the input files are there; it writes nothing. Checks that need the model (English-only
or multilingual) run in `check_for_model`, right after loading, before any data is prepared;
checks that need the hardware (fp16 without a GPU) resolve in `precision`; --output_dir is made
and tried for writing by output_dir.writable_output_dir, the first thing train() does. The
tables the checks use (tasks, LoRA modules, Whisper's limits, measured defaults) are in
choices.py and re-exported here.

One module for one job, the checks of TrainOptions: each flag's check sits beside its field,
as peft's LoraConfig does (near 400 lines because there are many flags).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import OptionsError
from ..data.hf_data import is_saved_dataset
from ..languages import language_code
from ..run_files import TRAINER_STATE
from .choices import (ADALORA_INTERVAL, ADALORA_PHASES, DECODER_POSITIONS, DEFAULT_LORA_MODULES,
                      DEFAULT_TIMESTAMP_SHARE, LORA_MODULES, LR_SCHEDULERS, MAX_SECONDS, TASKS)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    # --- model -------------------------------------------------------------------------------
    # Base model: hub id (openai/whisper-small), local HF folder, faster-whisper folder, .pt
    # checkpoint or bundled:tiny.en / bundled:base (see models.load_model).
    model_name_or_path: str
    # Training manifest: JSON list [{"audio_path", "text"[, "language"][, "segments"]}] or JSON Lines,
    # or a folder written by a Hugging Face dataset's save_to_disk. None: dataset_name is given.
    train_file: str | None
    # Where the adapter, processor, configs, metrics, checkpoints and TensorBoard runs/ go.
    output_dir: str
    # Hub downloads and converted models go here (default: the HF cache and ~/.cache/whisper-lora).
    cache_dir: str | None = None

    # --- data --------------------------------------------------------------------------------
    # Validation manifest: loss and WER/CER every eval_steps, a baseline before step 0, best adapter kept.
    validation_file: str | None = None
    # Use at most this many usable rows of each manifest (the first ones); None: all.
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # Language of the speech (code or name); a row's own "language" wins. Required for a
    # multilingual model unless every row names its language; English-only models take "en" only.
    language: str | None = None
    # "transcribe" (write what is said) or "translate" (write it in English; multilingual models only).
    task: str = "transcribe"
    # Train every target with timestamp tokens (a row's segments, else one segment over its speech),
    # for a model whose main use is timestamped transcripts.
    timestamps: bool = False
    # Share of targets trained with timestamp tokens. None: 1.0 with --timestamps, else
    # DEFAULT_TIMESTAMP_SHARE, so a model trained without --timestamps still writes timestamps.
    timestamp_share: float | None = None
    # Rows whose audio is longer or shorter than these (seconds) are dropped before training.
    max_duration_in_seconds: float = MAX_SECONDS
    min_duration_in_seconds: float = 0.0
    # Rows whose label (prefix + text + end token, timestamps included) is longer are dropped.
    max_label_length: int = DECODER_POSITIONS
    # Fail on any bad row instead of dropping it with a report.
    strict: bool = False
    # Processes decoding audio and computing features while the model trains (0: in the main
    # process). None: 0 on a CPU (its cores are busy training), up to 8 with a GPU.
    num_workers: int | None = None
    # A Hugging Face dataset instead of --train_file: a hub name (the hub when online, its cache
    # otherwise), a local folder of data files for load_dataset, or a save_to_disk folder.
    dataset_name: str | None = None
    dataset_config: str | None = None  # the dataset's configuration (Common Voice: the language, "en")
    train_split: str = "train"  # split of dataset_name (or of a saved DatasetDict) to train on
    eval_split: str | None = None  # split to validate on; None: none, unless --validation_file
    audio_column: str = "audio"  # the dataset's audio column (an Audio feature or paths)
    text_column: str | None = None  # None: the first of text, sentence, transcript, ... the dataset has
    # Read dataset_name as a stream instead of downloading it whole (sets too big for the disk):
    # rows are checked as they arrive and bad ones skipped with a count; needs --max_steps.
    streaming: bool = False

    # --- LoRA --------------------------------------------------------------------------------
    lora_r: int = 32  # rank of each adapter matrix pair; larger: more capacity and parameters
    lora_alpha: int = 64  # adapters are scaled by lora_alpha / lora_r
    lora_dropout: float = 0.05  # dropout on the adapters' input, against overfitting small sets
    # Which linear layers get adapters (names from LORA_MODULES), in the encoder and the decoder.
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_MODULES
    # Adapters on the decoder only: the encoder is frozen as is (faster, less memory; learns
    # vocabulary and style rather than a new voice or acoustic condition).
    freeze_encoder: bool = False
    # Adapters on the encoder only: the decoder, Whisper's language model, stays as it is. Tried
    # because on real Dutch speech the default (both stacks) wrote 9% WER on its training lines
    # against 31% on held-out ones; encoder-only did worse held out (33%), so it is not the default.
    freeze_decoder: bool = False
    # Pack each batch's clips into shared 30-s windows (packing.py): the encoder's cost is
    # per window, so short clips train several times faster in less memory. Off with
    # --freeze_encoder, whose encoder cache needs one clip per item.
    pack_clips: bool = True
    # rsLoRA (peft): adapters scaled by lora_alpha / sqrt(lora_r) instead of / lora_r, so a
    # larger rank keeps learning as fast. DoRA (peft): each adapted weight's magnitude and
    # direction are learnt apart; slower steps (its norm is recomputed every forward pass).
    use_rslora: bool = False
    use_dora: bool = False
    # AdaLoRA (peft): every adapter starts at rank lora_r, and while training the rank budget moves
    # to the layers whose updates matter most (by gradient sensitivity), ending at an average of
    # adalora_target_r (None: half of lora_r). peft's schedule: budget fixed for the first 10% of
    # steps, cut down until 70%, kept for the rest (ADALORA_PHASES).
    use_adalora: bool = False
    adalora_target_r: int | None = None

    # --- augmentation (training clips only) ----------------------------------------------------
    # SpecAugment, Whisper's own: while training, the encoder zeroes runs of 10 time steps
    # (about mask_time_prob of all frames) and of 10 mel bins (about mask_feature_prob of them).
    spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0
    # Each clip played at 0.9x, 1.0x or 1.1x (tempo and pitch; training/augment.py).
    speed_perturb: bool = False
    # White noise on half the clips at a random SNR of noise_snr to noise_snr + 20 dB; None: none.
    noise_snr: float | None = None

    # --- training ----------------------------------------------------------------------------
    num_train_epochs: float = 3.0  # passes over the training set (fractions allowed)
    max_steps: int = -1  # optimizer steps to run; overrides num_train_epochs when > 0
    per_device_train_batch_size: int = 8  # clips per forward pass on each device
    per_device_eval_batch_size: int | None = None  # None: the training batch size
    gradient_accumulation_steps: int = 1  # forward passes summed into one optimizer step
    # Peak AdamW learning rate. 1e-3 (the HF blog's LoRA rate) made real Dutch speech worse before
    # it got better (validation WER 55.8% -> 61.0% after half an epoch); 3e-4 took it to 38.9%
    # (benchmarks/RESULTS.md, real speech).
    learning_rate: float = 3e-4
    weight_decay: float = 0.0  # AdamW weight decay
    # Linear warm-up: a whole number of steps, or a fraction (< 1) of all steps.
    warmup_steps: float = 0.1
    lr_scheduler_type: str = "linear"  # decay after warm-up (transformers' SchedulerType names)
    max_grad_norm: float = 1.0  # gradient clipping
    fp16: bool = False  # float16 mixed precision on a CUDA GPU; on a CPU: fp32 with a warning
    bf16: bool = False  # bfloat16 mixed precision (Ampere+ GPU, or a CPU with bf16 instructions)
    # Neither flag: fp32, except on a CPU that multiplies bf16 in hardware (AVX512-BF16, AMX),
    # where bf16 autocast makes a step of bundled:base 1.65x faster (benchmarks/RESULTS.md).
    # fp32=True keeps fp32 there too.
    fp32: bool = False
    # Targets smoothed towards the uniform distribution by this much (0: plain cross-entropy).
    label_smoothing: float = 0.0
    # Glossary-aware training (training/prompt_terms.py): prompt_share of the training clips get a
    # prompt listing some of their rarer words among distractors, as `transcribe --glossary`
    # prompts. glossary: a term file whose terms are listed too (and drawn as distractors);
    # giving it turns glossary_training on.
    glossary_training: bool = False
    glossary: str | None = None
    prompt_share: float = 0.5
    # Stop when the validation error rate has not improved for this many evaluations; None: never.
    early_stopping_patience: int | None = None
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # Hold the frozen base model's linear layers in 8 bits (LLM.int8) or 4 bits (QLoRA: NF4, double
    # quantization) with bitsandbytes, on a CUDA GPU; the adapters still train in full precision
    # (training/kbit.py). Compute runs in --bf16/--fp16, else bf16 where the GPU has it, else fp16.
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    seed: int = 42  # weights of the new adapters, dropout, data order
    # Continue from output_dir/checkpoint-N (a path) or "latest" (the newest complete checkpoint).
    resume_from_checkpoint: str | None = None
    # Checkpoints of an earlier run in output_dir (when not resuming) are deleted; without this
    # flag they are moved to output_dir/previous-runs/TIME/ with a warning, so nothing is lost.
    overwrite_output_dir: bool = False

    # --- logging, evaluation, checkpoints ------------------------------------------------------
    logging_steps: int = 10  # log loss and learning rate every N steps
    eval_steps: int | None = None  # evaluate every N steps; None: every save_steps
    save_steps: int = 500  # write checkpoint-N every N steps (a multiple of eval_steps)
    save_total_limit: int | None = 3  # keep at most this many checkpoints (the best one is always kept)
    generation_max_length: int = 225  # most tokens generated per validation clip
    generation_num_beams: int = 1  # beams for validation transcripts (1: greedy)
    use_wandb: bool = False  # also log to Weights & Biases (WANDB_MODE=offline works without network)
    wandb_project: str = "whisper-lora"  # W&B project name
    run_name: str | None = None  # name of the run in W&B and TensorBoard (default: a timestamp)

    def __post_init__(self):
        # Normalise types a caller may pass loosely (a list for modules, a path object for files).
        if isinstance(self.lora_target_modules, str):
            modules = tuple(m for m in self.lora_target_modules.replace(",", " ").split() if m)
        else:
            modules = tuple(self.lora_target_modules)
        object.__setattr__(self, "lora_target_modules", modules)
        for name in ("model_name_or_path", "train_file", "output_dir", "validation_file", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        if self.language is not None:
            object.__setattr__(self, "language", language_code(self.language, flag="--language"))
        self._check()

    def _check(self):
        """One rule per line, in the order of the fields above (a flat list, longer than most
        functions here, because it is read against the flags); raises OptionsError."""

        def need(condition, message):
            if not condition:
                raise OptionsError(message)

        need(self.model_name_or_path, "--model_name_or_path is required")
        need(self.train_file or self.dataset_name,
             "give --train_file (a manifest or a save_to_disk folder) or --dataset_name (a Hugging Face dataset)")
        need(not (self.train_file and self.dataset_name), "--train_file and --dataset_name both given: choose one")
        need(self.train_file is None or Path(self.train_file).is_file() or is_saved_dataset(self.train_file),
             f"--train_file {self.train_file}: no such file (or folder written by save_to_disk)")
        need(self.validation_file is None or Path(self.validation_file).is_file()
             or is_saved_dataset(self.validation_file),
             f"--validation_file {self.validation_file}: no such file (or folder written by save_to_disk)")
        need(self.eval_split is None or self.dataset_name or is_saved_dataset(self.train_file),
             f"--eval_split {self.eval_split} goes with --dataset_name or a saved dataset; for a manifest give "
             "--validation_file")
        need(not (self.eval_split and self.validation_file),
             "--eval_split and --validation_file both given: choose one validation set")
        need(not self.streaming or self.dataset_name, "--streaming goes with --dataset_name")
        need(not (self.freeze_encoder and self.freeze_decoder),
             "--freeze_encoder with --freeze_decoder: nothing would be trained; leave one out")
        need(not (self.streaming and self.freeze_encoder),
             "--streaming with --freeze_encoder: the encoder cache needs each clip's place in a list; leave one out")
        need(not self.streaming or self.max_steps > 0,
             "--streaming: a stream has no length, so epochs cannot be counted: give --max_steps")
        need(self.task in TASKS, f"--task {self.task!r}: use transcribe or translate")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"--{name} {value}: must be at least 1")
        need(self.timestamp_share is None or 0.0 <= self.timestamp_share <= 1.0,
             f"--timestamp_share {self.timestamp_share}: must be between 0 and 1")
        need(0 < self.max_duration_in_seconds <= MAX_SECONDS,
             f"--max_duration_in_seconds {self.max_duration_in_seconds:g}: must be above 0 and at most "
             f"{MAX_SECONDS:g} (Whisper's window); split longer audio into clips")
        need(0 <= self.min_duration_in_seconds < self.max_duration_in_seconds,
             f"--min_duration_in_seconds {self.min_duration_in_seconds:g}: must be 0 or more and below "
             f"--max_duration_in_seconds ({self.max_duration_in_seconds:g})")
        need(4 <= self.max_label_length <= DECODER_POSITIONS,
             f"--max_label_length {self.max_label_length}: must be between 4 and {DECODER_POSITIONS} "
             "(the decoder's positions)")
        need(self.num_workers is None or self.num_workers >= 0, f"--num_workers {self.num_workers}: must be 0 or more")
        need(self.lora_r >= 1, f"--lora_r {self.lora_r}: the LoRA rank must be at least 1 (4-64 is usual)")
        need(self.lora_alpha > 0, f"--lora_alpha {self.lora_alpha}: must be positive (usually 2x --lora_r)")
        need(0.0 <= self.lora_dropout < 1.0, f"--lora_dropout {self.lora_dropout}: must be in [0, 1)")
        need(not (self.use_adalora and (self.use_dora or self.use_rslora)),
             f"--use_adalora with --use_{'dora' if self.use_dora else 'rslora'}: AdaLoRA scales and prunes its "
             "adapters its own way (peft supports neither with it); leave one out")
        need(self.adalora_target_r is None or self.use_adalora, "--adalora_target_r goes with --use_adalora")
        need(self.adalora_target_r is None or 1 <= self.adalora_target_r <= self.lora_r,
             f"--adalora_target_r {self.adalora_target_r}: the average rank AdaLoRA ends at, between 1 and "
             f"--lora_r ({self.lora_r}), where every adapter starts")
        need(self.lora_target_modules, "--lora_target_modules: name at least one of " + ", ".join(LORA_MODULES))
        unknown = [m for m in self.lora_target_modules if m not in LORA_MODULES]
        need(not unknown, f"--lora_target_modules {' '.join(unknown)}: unknown; choose from {', '.join(LORA_MODULES)}")
        need(0.0 <= self.mask_time_prob < 1.0, f"--mask_time_prob {self.mask_time_prob}: must be in [0, 1)")
        need(0.0 <= self.mask_feature_prob < 1.0, f"--mask_feature_prob {self.mask_feature_prob}: must be in [0, 1)")
        augment = [f for f in ("spec_augment", "speed_perturb") if getattr(self, f)]
        augment += ["noise_snr"] if self.noise_snr is not None else []
        need(not (augment and self.freeze_encoder),
             f"--{' --'.join(augment)} with --freeze_encoder: the frozen encoder's output is cached per clip, so "
             "the encoder would never hear the augmented audio; leave one out")
        need(self.noise_snr is None or -10.0 <= self.noise_snr <= 60.0,
             f"--noise_snr {self.noise_snr}: the lowest signal-to-noise ratio in dB, between -10 and 60 (10 is usual)")
        need(0.0 <= self.label_smoothing < 1.0, f"--label_smoothing {self.label_smoothing}: must be in [0, 1) "
                                                "(0.1 is usual)")
        need(0.0 < self.prompt_share <= 1.0, f"--prompt_share {self.prompt_share}: the share of training clips "
                                             "that get a prompt, more than 0 and at most 1 (0.5 is the default)")
        need(not (self.prompted and self.streaming),
             "--glossary_training with --streaming: the rare words of a stream are not known before it ends; "
             "train on a manifest or a downloaded dataset")
        if self.glossary is not None:
            from ..data.glossary import Glossary

            Glossary.read(self.glossary)  # its errors now, not after the model has loaded
        need(self.early_stopping_patience is None or self.early_stopping_patience >= 1,
             f"--early_stopping_patience {self.early_stopping_patience}: must be at least 1 evaluation")
        need(self.early_stopping_patience is None or self.has_validation,
             "--early_stopping_patience needs a validation set (--validation_file or --eval_split)")
        need(self.num_train_epochs > 0 or self.max_steps > 0,
             f"--num_train_epochs {self.num_train_epochs:g}: must be positive (or give --max_steps)")
        need(self.max_steps == -1 or self.max_steps >= 1, f"--max_steps {self.max_steps}: must be at least 1")
        need(self.per_device_train_batch_size >= 1,
             f"--per_device_train_batch_size {self.per_device_train_batch_size}: must be at least 1")
        need(self.per_device_eval_batch_size is None or self.per_device_eval_batch_size >= 1,
             f"--per_device_eval_batch_size {self.per_device_eval_batch_size}: must be at least 1")
        need(self.gradient_accumulation_steps >= 1,
             f"--gradient_accumulation_steps {self.gradient_accumulation_steps}: must be at least 1")
        need(0 < self.learning_rate < 1, f"--learning_rate {self.learning_rate:g}: must be above 0 and below 1 "
                                         "(1e-4 to 1e-3 is usual for LoRA)")
        need(self.weight_decay >= 0, f"--weight_decay {self.weight_decay}: must be 0 or more")
        need(self.warmup_steps >= 0 and (self.warmup_steps < 1 or float(self.warmup_steps).is_integer()),
             f"--warmup_steps {self.warmup_steps:g}: a whole number of steps, or a fraction below 1 of all steps")
        need(self.lr_scheduler_type in LR_SCHEDULERS,
             f"--lr_scheduler_type {self.lr_scheduler_type!r}: choose from {', '.join(LR_SCHEDULERS)}")
        need(self.max_grad_norm >= 0, f"--max_grad_norm {self.max_grad_norm}: must be 0 or more")
        need(sum((self.fp16, self.bf16, self.fp32)) <= 1, "--fp16, --bf16 and --fp32: give at most one")
        need(not (self.load_in_8bit and self.load_in_4bit), "--load_in_8bit and --load_in_4bit both given: choose one")
        need(not (self.fp32 and (self.load_in_8bit or self.load_in_4bit)),
             f"--fp32 with --load_in_{'8' if self.load_in_8bit else '4'}bit: quantized layers compute in bf16 or "
             "fp16 (picked for the GPU, or --bf16/--fp16); leave --fp32 out")
        need(self.logging_steps >= 1, f"--logging_steps {self.logging_steps}: must be at least 1")
        need(self.save_steps >= 1, f"--save_steps {self.save_steps}: must be at least 1")
        need(self.eval_steps is None or self.eval_steps >= 1, f"--eval_steps {self.eval_steps}: must be at least 1")
        # The best adapter is a saved checkpoint, so saving must happen at evaluation steps.
        need(not self.has_validation or self.save_steps % self.resolved_eval_steps == 0,
             f"--save_steps {self.save_steps} must be a multiple of --eval_steps {self.resolved_eval_steps}: "
             "the best adapter is kept from the checkpoints saved at evaluation steps")
        need(self.save_total_limit is None or self.save_total_limit >= 1,
             f"--save_total_limit {self.save_total_limit}: must be at least 1")
        need(1 <= self.generation_max_length <= DECODER_POSITIONS,
             f"--generation_max_length {self.generation_max_length}: must be between 1 and {DECODER_POSITIONS}")
        need(self.generation_num_beams >= 1, f"--generation_num_beams {self.generation_num_beams}: must be at least 1")
        need(bool(self.wandb_project.strip()), "--wandb_project: give a project name")
        self._check_resume()

    def _check_resume(self):
        value = self.resume_from_checkpoint
        if value is None or value == "latest":
            return
        path = Path(value).expanduser()
        if not (path.is_dir() and (path / TRAINER_STATE).is_file()):
            raise OptionsError(f"--resume_from_checkpoint {value}: not a complete checkpoint folder "
                               "(checkpoint-N with trainer_state.json); pass 'latest' to take the newest one "
                               "in --output_dir")

    # --- derived values ------------------------------------------------------------------------
    @property
    def has_validation(self) -> bool:
        return bool(self.validation_file or (self.eval_split and (self.dataset_name or self.train_file)))

    @property
    def adapted_stacks(self) -> tuple[str, ...]:
        """The stacks (encoder, decoder) whose layers get adapters."""
        return tuple(stack for stack, frozen in (("encoder", self.freeze_encoder), ("decoder", self.freeze_decoder))
                     if not frozen)

    @property
    def resolved_adalora_target_r(self) -> int:
        return self.adalora_target_r or max(1, self.lora_r // 2)

    @property
    def resolved_eval_steps(self) -> int:
        return self.eval_steps if self.eval_steps is not None else self.save_steps

    @property
    def resolved_eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size or self.per_device_train_batch_size

    @property
    def prompted(self) -> bool:
        """Glossary-aware training is on (--glossary_training, or a --glossary given)."""
        return self.glossary_training or self.glossary is not None

    @property
    def resolved_timestamp_share(self) -> float:
        if self.timestamp_share is not None:
            return self.timestamp_share
        return 1.0 if self.timestamps else DEFAULT_TIMESTAMP_SHARE

    def check_for_model(self, multilingual: bool, model_name: str = "") -> None:
        """Checks that depend on the loaded model; raises OptionsError."""
        if multilingual:
            return
        where = f" ({model_name})" if model_name else ""
        if self.language not in (None, "en"):
            raise OptionsError(f"--language {self.language}: the model{where} is English-only; "
                               "use a multilingual model (e.g. bundled:base, openai/whisper-small) for other languages")
        if self.task != "transcribe":
            raise OptionsError(f"--task {self.task}: the model{where} is English-only and cannot translate; "
                               "use a multilingual model")

    def precision(self, cuda: bool, cpu_bf16: bool) -> str:
        """'fp16', 'bf16' or 'fp32' for this hardware. fp16 without a GPU falls back to fp32 with a
        warning: CPU autocast has no fast float16 path, and a README command must not crash."""
        if self.fp16:
            if cuda:
                return "fp16"
            log.warning("--fp16 needs a CUDA GPU and none is visible: training in fp32 on the CPU instead")
            return "fp32"
        if self.bf16:
            if not cuda and not cpu_bf16:
                log.warning("--bf16 on a CPU without bf16 instructions (AVX512-BF16/AMX): bfloat16 arithmetic "
                            "is emulated there and many times slower than fp32; consider leaving --bf16 out")
            return "bf16"
        if not self.fp32 and not cuda and cpu_bf16:
            log.info("training in bf16 autocast: this CPU multiplies bf16 in hardware (--fp32 to keep fp32)")
            return "bf16"
        return "fp32"

    def as_dict(self) -> dict:
        """Every field, JSON-ready (tuples as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def replace(self, **changes) -> TrainOptions:
        return replace(self, **changes)


__all__ = ["TrainOptions", "TASKS", "LORA_MODULES", "DEFAULT_LORA_MODULES", "DEFAULT_TIMESTAMP_SHARE",
           "DECODER_POSITIONS", "MAX_SECONDS", "LR_SCHEDULERS", "ADALORA_PHASES", "ADALORA_INTERVAL"]
