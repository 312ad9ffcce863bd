"""LoRA fine-tuning of Whisper on the Hugging Face Seq2SeqTrainer: `train(options) -> TrainResult`.

The flow, top to bottom, and where each step lives:
  1. make --output_dir and try writing there, first of all, so a bad folder fails at once
     (training/output_dir.py); pick the checkpoint to resume from (same module);
  2. load the base model (any spec models.load_model takes; in 8 or 4 bits with --load_in_8bit/4bit,
     after checking a GPU and bitsandbytes are there: training/kbit.py) and check the options
     against it (training/options.py);
  3. read and check both manifests: bad rows are dropped with a report (or, --strict, fail)
     (training/dataset.py; the label ids: training/labels.py);
  4. wrap the model with LoRA adapters (peft) over the chosen layers of encoder and decoder
     (training/lora.py);
  5. train with Seq2SeqTrainer: loss and WER/CER by generation on the validation set every
     eval_steps and once before the first step, checkpoints every save_steps, the best kept
     (training/trainer.py);
  6. write output_dir: adapter, processor, generation config, training_config.json, metrics.json
     (here and training/output_dir.py; the file names: run_files.py).

Under torchrun or accelerate launch every process runs this same function; the Trainer shards
the data, and only the first process (rank 0) writes files.

One module for one job, the run from options to output folder in the order above (over 300
lines because each step is spelled out here, top to bottom, as nanoGPT's train.py reads; the
steps' machinery is in training/).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .devices import cpu_has_native_bf16
from .errors import OptionsError, WhisperLoraError
from .fileio import write_json
from .data.hf_data import check_dataset, dataset_rows, is_saved_dataset, streamed_head
from .run_files import METRICS, TRAINING_CONFIG
from .tokens import Tokens
from .training.augment import Augment
from .training.dataset import SpeechDataset, usable_rows
from .training.labels import LabelMaker, timestamped_rows
from .training.kbit import check_kbit, device_map, kbit_flag, kbit_precision, prepare_for_kbit, quantization_config
from .training.lora import add_lora
from .training.options import TrainOptions
from .training.output_dir import (baseline_eval, best_eval, prepare_output_dir, resolve_checkpoint,
                                  training_config, writable_output_dir)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path  # the training output folder; models.load_model(output_dir) loads base + adapter
    global_step: int  # optimizer steps done, resumed ones included
    baseline: dict | None  # validation metrics of the base model before step 0 (None: no validation set)
    best: dict | None  # validation metrics of the adapter kept in output_dir
    best_checkpoint: str | None  # checkpoint the kept adapter came from
    train_metrics: dict = field(default_factory=dict)  # train_loss, train_runtime, ... from the Trainer
    data: dict = field(default_factory=dict)  # per split: rows, kept, dropped with reasons
    processes: int = 1  # processes that trained together
    distributed: str = "NO"  # accelerate's distributed type: NO, MULTI_CPU, MULTI_GPU, ...


def train(options: TrainOptions, callbacks=()) -> TrainResult:
    """Fine-tune the base model options.model_name_or_path on options.train_file; the adapter and
    the run's files go to options.output_dir. `callbacks`: transformers TrainerCallbacks added to
    the trainer after its own, to watch a run without changing it (benchmarks/gpu_train.py times
    each step with one)."""
    output_dir = writable_output_dir(options.output_dir)  # before anything slow: a bad folder fails at once
    import torch
    from transformers import set_seed

    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # every process runs this; one report of each thing is enough
        logging.getLogger("whisper_lora").setLevel(logging.ERROR)
    resume = resolve_checkpoint(options.resume_from_checkpoint, output_dir)
    cuda = torch.cuda.is_available()
    check_kbit(options, cuda)  # no GPU or no bitsandbytes for --load_in_8bit/4bit: said before anything loads
    precision = options.precision(cuda=cuda, cpu_bf16=cpu_has_native_bf16())
    if kbit_flag(options):
        precision = kbit_precision(options, bf16_supported=torch.cuda.is_bf16_supported())
    _setup_wandb(options, output_dir)

    model, processor = _load_base(options, precision)
    tokens = Tokens.of(model)
    options.check_for_model(tokens.multilingual, options.model_name_or_path)
    train_set, eval_set, data = _datasets(options, processor, LabelMaker(processor.tokenizer, tokens, options.task))

    language = _main_language(options, train_set)
    _set_generation_defaults(model, tokens, language, options.task)
    set_seed(options.seed)  # the new adapters' initial weights
    if kbit_flag(options):
        model = prepare_for_kbit(model, options)
    model = add_lora(model, options, total_steps=planned_steps(options, train_set) if options.use_adalora else None)
    if rank == 0:
        model.print_trainable_parameters()
        prepare_output_dir(output_dir, options, resume)
        write_json(output_dir / TRAINING_CONFIG,
                   training_config(options, precision, data, language, options.resolved_timestamp_share))

    # Imported here, after _setup_wandb: transformers' integrations read WANDB_MODE on import.
    from .training.trainer import make_trainer

    trainer = make_trainer(options, model, processor, train_set, eval_set, output_dir, precision, cuda, resume,
                           tokens.multilingual, callbacks)
    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.cuda.OutOfMemoryError as exc:
        raise WhisperLoraError(out_of_memory_advice(options)) from exc
    return _finish(trainer, output, model, processor, output_dir, data, validated=eval_set is not None)


def planned_steps(options: TrainOptions, train_set) -> int:
    """The optimizer steps the Trainer will take: --max_steps (a stream has no length, and needs
    it), else the epochs over batches of the training rows shared among the processes, as
    transformers counts them."""
    if options.max_steps > 0:
        return options.max_steps
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    batches = math.ceil(len(train_set) / (options.per_device_train_batch_size * world_size))
    per_epoch = max(batches // options.gradient_accumulation_steps, 1)
    return max(math.ceil(options.num_train_epochs * per_epoch), 1)


def _datasets(options: TrainOptions, processor, labels: LabelMaker) -> tuple[SpeechDataset, SpeechDataset | None, dict]:
    """The training set, the validation set (None without one), and per split a report of the
    rows kept and dropped. Each comes from a manifest or a Hugging Face dataset (_rows)."""
    limits = dict(max_seconds=options.max_duration_in_seconds, min_seconds=options.min_duration_in_seconds,
                  max_label_length=options.max_label_length, strict=options.strict)
    share = options.resolved_timestamp_share
    pack = options.pack_clips and not options.freeze_encoder
    if options.streaming:
        return _streamed_datasets(options, processor, labels, limits, pack)
    train_rows, train_report, train_audio = _rows(options, labels, options.train_file, options.train_split,
                                                  options.max_train_samples, limits)
    # Packed windows already hold several utterances; unpacked, timestamped items join a few.
    train_set = SpeechDataset(train_rows, processor, labels, options.language,
                              timestamped_rows(train_rows, share, options.seed), join=not pack, seed=options.seed,
                              max_label_length=options.max_label_length, raw=pack, audio_loader=train_audio,
                              augment=Augment(options.speed_perturb, options.noise_snr, options.seed),
                              prompts=_prompt_terms(options, train_rows))
    eval_set, data = None, {"train": train_report.as_dict()}
    if options.has_validation:
        source = options.validation_file or (options.train_file if not options.dataset_name else None)
        eval_rows, eval_report, eval_audio = _rows(options, labels, source, options.eval_split or "validation",
                                                   options.max_eval_samples, limits)
        eval_set = SpeechDataset(eval_rows, processor, labels, options.language,
                                 timestamped_rows(eval_rows, 1.0 if options.timestamps else 0.0, options.seed),
                                 audio_loader=eval_audio)
        data["validation"] = eval_report.as_dict()
    log.info("training on %d clips (%d with timestamp targets)%s%s", len(train_set), len(train_set.timestamped),
             ", each batch packed into shared 30-s windows" if pack else "",
             f", validating on {len(eval_set)}" if eval_set else ", no validation set")
    return train_set, eval_set, data


def _prompt_terms(options: TrainOptions, rows):
    """Glossary-aware training's choice of prompt terms per training row, or None when it is off."""
    if not options.prompted:
        return None
    from .data.glossary import Glossary
    from .training.prompt_terms import PromptTerms

    glossary = Glossary.read(options.glossary) if options.glossary else None
    log.info("glossary-aware training: %.0f%% of the clips prompted with terms%s", 100 * options.prompt_share,
             f" (and {len(glossary.terms)} from {options.glossary})" if glossary else "")
    return PromptTerms([r.text for r in rows], options.prompt_share, options.seed, glossary)


STREAMED_EVAL_ROWS = 200  # validation rows read from a stream when --max_eval_samples is not given


def _streamed_datasets(options: TrainOptions, processor, labels: LabelMaker, limits: dict, pack: bool):
    """--streaming: the training split read as it streams; the validation split's first rows held in memory."""
    from .training.stream import StreamingSpeechDataset

    train_set = StreamingSpeechDataset(
        options.dataset_name, options.train_split, processor, labels, options.language, config=options.dataset_config,
        audio_column=options.audio_column, text_column=options.text_column, share=options.resolved_timestamp_share,
        seed=options.seed, max_seconds=options.max_duration_in_seconds, min_seconds=options.min_duration_in_seconds,
        max_label_length=options.max_label_length, raw=pack, cache_dir=options.cache_dir)
    data = {"train": {"manifest": f"{options.dataset_name}[{options.train_split}]", "streaming": True}}
    eval_set = None
    if options.eval_split:
        head = streamed_head(options.dataset_name, options.eval_split, options.max_eval_samples or STREAMED_EVAL_ROWS,
                             config=options.dataset_config, audio_column=options.audio_column,
                             cache_dir=options.cache_dir)
        checked, reader = check_dataset(head, f"{options.dataset_name}[{options.eval_split}]", os.getcwd(),
                                        audio_column=options.audio_column, text_column=options.text_column,
                                        max_seconds=options.max_duration_in_seconds)
        eval_rows, eval_report = usable_rows(checked.manifest, labels, options.language, report=checked, **limits)
        eval_set = SpeechDataset(eval_rows, processor, labels, options.language,
                                 timestamped_rows(eval_rows, 1.0 if options.timestamps else 0.0, options.seed),
                                 audio_loader=reader)
        data["validation"] = eval_report.as_dict()
    log.info("training on the stream %s[%s]%s", options.dataset_name, options.train_split,
             f", validating on its first {len(eval_set)} {options.eval_split} rows" if eval_set else "")
    return train_set, eval_set, data


def _rows(options: TrainOptions, labels: LabelMaker, manifest: str | None, split: str, max_samples: int | None,
          limits: dict):
    """(usable rows, their DataReport, the reader of their audio or None for files) of a manifest,
    a save_to_disk folder, or (manifest None) the split of --dataset_name."""
    if manifest is not None and not is_saved_dataset(manifest):
        rows, report = usable_rows(manifest, labels, options.language, max_samples=max_samples, **limits)
        return rows, report, None
    checked, reader = dataset_rows(manifest or options.dataset_name, split, config=options.dataset_config,
                                   audio_column=options.audio_column, text_column=options.text_column,
                                   max_seconds=options.max_duration_in_seconds, cache_dir=options.cache_dir)
    rows, report = usable_rows(checked.manifest, labels, options.language, max_samples=max_samples,
                               report=checked, **limits)
    return rows, report, reader


def _finish(trainer, output, model, processor, output_dir: Path, data: dict, validated: bool) -> TrainResult:
    """The result of a finished run; rank 0 saves the kept adapter and the run's files beside it."""
    if trainer.encoder_cache is not None:
        log.info("frozen encoder: %d clips encoded once and reused (%.0f MB)", len(trainer.encoder_cache.stored),
                 trainer.encoder_cache.bytes / 1e6)
    trainer.save_model(str(output_dir))  # the adapter (safetensors) and its config; rank 0 only
    state = trainer.state
    baseline = baseline_eval(state.log_history)
    best = best_eval(state.log_history, state.best_global_step) if validated else None
    result = TrainResult(output_dir=output_dir, global_step=state.global_step, baseline=baseline, best=best,
                         best_checkpoint=state.best_model_checkpoint, train_metrics=dict(output.metrics),
                         data=data, processes=trainer.accelerator.num_processes,
                         distributed=str(trainer.accelerator.distributed_type).split(".")[-1])
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(output_dir))
        model.generation_config.save_pretrained(str(output_dir))
        trainer.save_state()  # trainer_state.json: the full log history, read by the curves/report
        write_json(output_dir / METRICS, metrics_summary(result, state.log_history))
        log.info(summary_line(result))
        if baseline and best and best["eval_error_rate"] > baseline["eval_error_rate"]:
            log.warning("the kept adapter is worse on the validation set than the base model was before "
                        "training: try a lower --learning_rate, fewer epochs or more data")
    return result


# --- model ---------------------------------------------------------------------------------------

def _load_base(options: TrainOptions, precision: str):
    from .models import is_adapter_folder, load_model

    if is_adapter_folder(options.model_name_or_path):
        raise OptionsError(f"--model_name_or_path {options.model_name_or_path} is a training output folder "
                           "(base + adapter): merge it first (`whisper-lora merge`) and train on the merged model")
    import torch

    # float32 weights whatever the checkpoint stores (transformers 5 would keep the hub's float16
    # large-v3 in float16): --fp16/--bf16 are mixed precision, autocast over float32 weights.
    quantization, dtype = None, torch.float32
    if kbit_flag(options):  # quantized as it loads, onto the GPU; the rest in the compute type until prepared
        quantization = {"quantization_config": quantization_config(options, precision), "device_map": device_map()}
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    model, processor = load_model(options.model_name_or_path, cache_dir=options.cache_dir, dtype=dtype,
                                  quantization=quantization)
    model.config.use_cache = False  # the key/value cache only helps generation, and clashes with checkpointing
    # SpecAugment is Whisper's own: the encoder masks its input while training (never in eval).
    model.config.apply_spec_augment = options.spec_augment
    model.config.mask_time_prob = options.mask_time_prob
    model.config.mask_feature_prob = options.mask_feature_prob
    return model, processor


def _main_language(options: TrainOptions, dataset: SpeechDataset) -> str | None:
    if options.language:
        return options.language
    counts = Counter(dataset.languages)
    return counts.most_common(1)[0][0] if counts else None


def _set_generation_defaults(model, tokens: Tokens, language: str | None, task: str) -> None:
    """What the saved generation config forces at transcription time: language and task on a
    multilingual model (an English-only one has neither and rejects them)."""
    gen = model.generation_config
    if tokens.multilingual:
        gen.language = language
        gen.task = task
    gen.forced_decoder_ids = None  # legacy field; language and task above replace it


# --- results and the run's surroundings ---------------------------------------------------

def metrics_summary(result: TrainResult, history: list[dict]) -> dict:
    return {"global_step": result.global_step, "processes": result.processes, "distributed": result.distributed,
            "baseline": result.baseline, "best": result.best,
            "best_checkpoint": result.best_checkpoint, "train": result.train_metrics,
            "data": {k: {kk: v for kk, v in d.items() if kk != "dropped_rows"} for k, d in result.data.items()},
            "log_history": history}


def summary_line(result: TrainResult) -> str:
    text = f"done: {result.global_step} steps; adapter in {result.output_dir}"
    if result.baseline and result.best:
        name = "CER" if result.best.get("eval_metric") == "cer" else "WER"
        text += (f"; validation {name} {100 * result.baseline['eval_error_rate']:.1f}% before, "
                 f"{100 * result.best['eval_error_rate']:.1f}% after (step {result.best.get('step')})")
    return text


def _setup_wandb(options: TrainOptions, output_dir: Path) -> None:
    if not options.use_wandb:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise OptionsError("--use_wandb: the wandb package is not installed; pip install wandb "
                           "(or pip install 'whisper-lora[wandb]')") from None
    os.environ["WANDB_PROJECT"] = options.wandb_project
    os.environ.setdefault("WANDB_DIR", str(output_dir))
    logged_in = os.environ.get("WANDB_API_KEY") or _netrc_has("api.wandb.ai")
    if not logged_in and os.environ.get("WANDB_MODE") not in ("offline", "disabled"):
        log.warning("--use_wandb: no W&B login found (run `wandb login`); logging offline under %s/wandb "
                    "(upload later with `wandb sync`)", output_dir)
        os.environ["WANDB_MODE"] = "offline"


def _netrc_has(host: str) -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return host in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def out_of_memory_advice(options: TrainOptions) -> str:
    """What to change when the GPU runs out of memory (the original README's first trouble)."""
    tips = []
    if options.per_device_train_batch_size > 2:
        tips.append(f"--per_device_train_batch_size 2 --gradient_accumulation_steps "
                    f"{options.gradient_accumulation_steps * options.per_device_train_batch_size // 2} "
                    "(same effective batch)")
    if not options.gradient_checkpointing:
        tips.append("--gradient_checkpointing")
    if not (options.fp16 or options.bf16):
        tips.append("--fp16 (or --bf16 on Ampere and newer)")
    if not kbit_flag(options):
        tips.append("--load_in_8bit or --load_in_4bit (pip install 'whisper-lora[kbit]')")
    tips.append("a smaller model (whisper-small or base)")
    return ("CUDA out of memory while training; try: " + "; ".join(tips) +
            ". Finished checkpoints in --output_dir are kept: add --resume_from_checkpoint latest.")
