"""LoRA fine-tuning of Whisper on the Hugging Face Seq2SeqTrainer: `train(options) -> TrainResult`.

The flow, top to bottom:
  1. check the options, pick the checkpoint to resume from;
  2. load the base model (any spec models.load_model takes) and check the options against it;
  3. read and check both manifests: bad rows are dropped with a report (or, --strict, fail);
  4. wrap the model with LoRA adapters (peft) over the chosen layers of encoder and decoder;
  5. train with Seq2SeqTrainer: loss and WER/CER by generation on the validation set every
     eval_steps and once before the first step, checkpoints every save_steps, the best kept;
  6. write output_dir: adapter, processor, generation config, training_config.json, metrics.json.

Under torchrun or accelerate launch every process runs this same function; the Trainer shards
the data, and only the first process (rank 0) writes files.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .training.dataset import Collator, LabelMaker, SpeechDataset, Tokens, timestamped_rows, usable_rows
from .devices import cpu_has_native_bf16, mps_available
from .errors import OptionsError, WhisperLoraError
from .fileio import write_json
from .run_files import CHECKPOINT_FILES, CHECKPOINT_PREFIX, METRICS, TRAINING_CONFIG
from .training.options import TrainOptions

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


def train(options: TrainOptions) -> TrainResult:
    import torch
    from transformers import set_seed

    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # every process runs this; one report of each thing is enough
        logging.getLogger("whisper_lora").setLevel(logging.ERROR)
    output_dir = Path(options.output_dir).expanduser().absolute()
    resume = resolve_checkpoint(options.resume_from_checkpoint, output_dir)
    cuda = torch.cuda.is_available()
    precision = options.precision(cuda=cuda, cpu_bf16=cpu_has_native_bf16())
    _setup_wandb(options, output_dir)

    model, processor = _load_base(options)
    tokens = Tokens.of(model)
    options.check_for_model(tokens.multilingual, options.model_name_or_path)
    labels = LabelMaker(processor.tokenizer, tokens, options.task)

    limits = dict(max_seconds=options.max_duration_in_seconds, min_seconds=options.min_duration_in_seconds,
                  max_label_length=options.max_label_length, strict=options.strict)
    train_rows, train_report = usable_rows(options.train_file, labels, options.language,
                                           max_samples=options.max_train_samples, **limits)
    share = options.resolved_timestamp_share
    pack = options.pack_clips and not options.freeze_encoder
    # Packed windows already hold several utterances; unpacked, timestamped items join a few.
    train_set = SpeechDataset(train_rows, processor, labels, options.language,
                              timestamped_rows(train_rows, share, options.seed), join=not pack, seed=options.seed,
                              max_label_length=options.max_label_length, raw=pack)
    eval_set, data = None, {"train": train_report.as_dict()}
    if options.validation_file:
        eval_rows, eval_report = usable_rows(options.validation_file, labels, options.language,
                                             max_samples=options.max_eval_samples, **limits)
        eval_set = SpeechDataset(eval_rows, processor, labels, options.language,
                                 timestamped_rows(eval_rows, 1.0 if options.timestamps else 0.0, options.seed))
        data["validation"] = eval_report.as_dict()
    log.info("training on %d clips (%d with timestamp targets)%s%s", len(train_set), len(train_set.timestamped),
             ", each batch packed into shared 30-s windows" if pack else "",
             f", validating on {len(eval_set)}" if eval_set else ", no validation set")

    language = _main_language(options, train_set)
    _set_generation_defaults(model, tokens, language, options.task)
    set_seed(options.seed)  # the new adapters' initial weights
    model = add_lora(model, options)
    if rank == 0:
        model.print_trainable_parameters()

    if rank == 0:
        _prepare_output_dir(output_dir, options, resume)
        config = training_config(options, precision, data, language, share)
        write_json(output_dir / TRAINING_CONFIG, config)

    trainer = _make_trainer(options, model, processor, train_set, eval_set, output_dir, precision, cuda, resume,
                            tokens.multilingual)
    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.cuda.OutOfMemoryError as exc:
        raise WhisperLoraError(out_of_memory_advice(options)) from exc

    if trainer.encoder_cache is not None:
        log.info("frozen encoder: %d clips encoded once and reused (%.0f MB)", len(trainer.encoder_cache.stored),
                 trainer.encoder_cache.bytes / 1e6)
    trainer.save_model(str(output_dir))  # the adapter (safetensors) and its config; rank 0 only
    state = trainer.state
    baseline = _baseline(state.log_history)
    best = _best_eval(state.log_history, state.best_global_step) if eval_set is not None else None
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

def _load_base(options: TrainOptions):
    from .models import is_adapter_folder, load_model

    if is_adapter_folder(options.model_name_or_path):
        raise OptionsError(f"--model_name_or_path {options.model_name_or_path} is a training output folder "
                           "(base + adapter): merge it first (`whisper-lora merge`) and train on the merged model")
    model, processor = load_model(options.model_name_or_path, cache_dir=options.cache_dir)
    model.config.use_cache = False  # the key/value cache only helps generation, and clashes with checkpointing
    return model, processor


def lora_target_regex(modules: tuple[str, ...], freeze_encoder: bool) -> str:
    """A regular expression peft full-matches against module names such as
    model.encoder.layers.0.self_attn.q_proj or model.decoder.layers.3.fc1."""
    stacks = "decoder" if freeze_encoder else "encoder|decoder"
    attention = [m for m in modules if m.endswith("_proj")]
    feed_forward = [m for m in modules if m.startswith("fc")]
    parts = []
    if attention:
        parts.append(rf"model\.({stacks})\.layers\.\d+\.(self_attn|encoder_attn)\.({'|'.join(attention)})")
    if feed_forward:
        parts.append(rf"model\.({stacks})\.layers\.\d+\.({'|'.join(feed_forward)})")
    return "|".join(f"(?:{p})" for p in parts)


def add_lora(model, options: TrainOptions):
    """The base model, frozen, with trainable LoRA adapters on the chosen layers."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        target_modules=lora_target_regex(options.lora_target_modules, options.freeze_encoder),
                        bias="none")
    return get_peft_model(model, config)


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


# --- trainer -------------------------------------------------------------------------------------

def _make_trainer(options: TrainOptions, model, processor, train_set, eval_set, output_dir: Path,
                  precision: str, cuda: bool, resume: Path | None, multilingual: bool):
    from transformers import Seq2SeqTrainingArguments
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import ProgressCallback

    from .training.encoder_cache import EncoderCache
    from .training.packing import WindowPacker
    from .training.trainer import (CheckpointExtrasCallback, FinalStepCallback, LossProgressCallback, WhisperTrainer,
                          compute_metrics_fn)

    evaluate = eval_set is not None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if options.num_workers is not None:
        workers = options.num_workers
    else:  # on a CPU the cores are busy training; a GPU waits for data unless workers decode it
        # Up to 8: on an H100 four workers held base at ~110 clips/s whatever the precision or batch.
        workers = min(8, max(1, (os.cpu_count() or 2) // (2 * world_size))) if cuda else 0
    args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=options.num_train_epochs, max_steps=options.max_steps,
        per_device_train_batch_size=options.per_device_train_batch_size,
        per_device_eval_batch_size=options.resolved_eval_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=options.learning_rate, weight_decay=options.weight_decay,
        warmup_steps=options.warmup_steps, lr_scheduler_type=options.lr_scheduler_type,
        max_grad_norm=options.max_grad_norm,
        fp16=precision == "fp16", bf16=precision == "bf16",
        # Without a GPU, say so: accelerate then runs several processes as MULTI_CPU (gloo), with
        # gradients synchronised and validation results gathered; left out, each process would
        # train on its shard alone (transformers 5 / accelerate 1.x on a GPU-less machine).
        use_cpu=not cuda and not mps_available(),
        **_checkpointing_args(options.gradient_checkpointing),
        logging_steps=options.logging_steps, logging_first_step=True,
        eval_strategy="steps" if evaluate else "no", eval_steps=options.resolved_eval_steps if evaluate else None,
        eval_on_start=evaluate and resume is None,  # the baseline; a resumed run has it in its history
        save_strategy="steps", save_steps=options.save_steps, save_total_limit=options.save_total_limit,
        load_best_model_at_end=evaluate, metric_for_best_model="error_rate" if evaluate else None,
        greater_is_better=False if evaluate else None,
        predict_with_generate=True, generation_max_length=options.generation_max_length,
        generation_num_beams=options.generation_num_beams,
        report_to=["wandb"] if options.use_wandb else [],  # TensorBoard is added below, with its folder
        run_name=options.run_name, seed=options.seed,
        dataloader_num_workers=workers, dataloader_pin_memory=cuda,
        remove_unused_columns=False, label_names=["labels"],  # peft's forward hides the label name
        ddp_backend=None if cuda else ("gloo" if world_size > 1 else None),
        ddp_find_unused_parameters=False,
    )
    run = options.run_name or time.strftime("%b%d_%H-%M-%S") + "_" + platform.node()
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(output_dir / "runs" / run)  # `tensorboard --logdir output_dir/runs`
    tokenizer = processor.tokenizer
    trainer = WhisperTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=Collator(model.config.decoder_start_token_id, packer=WindowPacker(
            processor.feature_extractor, train_set.label_maker, train_set.max_label_length, options.seed)
            if train_set.raw else None),
        processing_class=processor,  # saved into every checkpoint, tokenizer included
        compute_metrics=compute_metrics_fn(tokenizer, eval_set) if evaluate else None,
        callbacks=[tensorboard, FinalStepCallback(evaluate),
                   CheckpointExtrasCallback(output_dir, model.generation_config)],
        task=options.task, multilingual=multilingual, timestamps=options.timestamps,
        encoder_cache=EncoderCache() if options.freeze_encoder else None)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LossProgressCallback())
    return trainer


def _checkpointing_args(enabled: bool) -> dict:
    """Gradient checkpointing, under the name this transformers version uses (renamed in 5.x).
    Non-reentrant: the reentrant variant loses the adapters' gradients when inputs need none."""
    import dataclasses

    from transformers import Seq2SeqTrainingArguments

    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


# --- checkpoints and the output folder -------------------------------------------------------------

def complete_checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-N folders holding everything a resume needs, oldest first. A checkpoint cut
    short (the process killed while writing it) lacks trainer_state.json, written last."""
    found = []
    for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name.split("-", 1)[1]
        if step.isdigit() and path.is_dir() and all((path / f).is_file() for f in CHECKPOINT_FILES):
            found.append((int(step), path))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(value: str | None, output_dir: Path) -> Path | None:
    if value is None:
        return None
    if value != "latest":
        return Path(value).expanduser().absolute()
    found = complete_checkpoints(output_dir)
    if not found:
        raise OptionsError(f"--resume_from_checkpoint latest: no complete checkpoint-N folder in {output_dir}; "
                           "start without --resume_from_checkpoint")
    partial = [p.name for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p not in found
               and p.name.split("-", 1)[1].isdigit() and int(p.name.split("-", 1)[1]) > int(found[-1].name.split("-")[1])]
    if partial:
        log.warning("skipping incomplete %s (cut short while being written)", ", ".join(sorted(partial)))
    log.info("resuming from %s", found[-1])
    return found[-1]


def _prepare_output_dir(output_dir: Path, options: TrainOptions, resume: Path | None) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    if old and resume is None:
        # A new run must not mix its checkpoints with an earlier run's (resume "latest" and the
        # Trainer's rotation would pick up the wrong ones).
        if options.overwrite_output_dir:
            for path in old:
                shutil.rmtree(path, ignore_errors=True)
            log.warning("--overwrite_output_dir: deleted %d checkpoints of an earlier run in %s", len(old), output_dir)
        else:
            archive = output_dir / "previous-runs" / time.strftime("%Y%m%d-%H%M%S")
            archive.mkdir(parents=True, exist_ok=True)
            for path in old:
                os.replace(path, archive / path.name)
            log.warning("%s held checkpoints of an earlier run: moved them to %s (to continue that run "
                        "instead, pass --resume_from_checkpoint latest; --overwrite_output_dir deletes them)",
                        output_dir, archive)
    if resume is not None and (output_dir / TRAINING_CONFIG).is_file():
        before = json.loads((output_dir / TRAINING_CONFIG).read_text(encoding="utf-8")).get("flags", {})
        now = options.as_dict()
        changed = [k for k in ("model_name_or_path", "train_file", "per_device_train_batch_size",
                               "gradient_accumulation_steps", "learning_rate", "lora_r", "lora_alpha",
                               "lora_target_modules", "freeze_encoder", "seed") if k in before and before[k] != now[k]]
        if changed:
            log.warning("resuming with flags that differ from the first run: %s; the optimizer state and step "
                        "count continue, but the run is no longer the same recipe", ", ".join(changed))


def base_model_spec(spec: str) -> str:
    """The spec to reload the base from: a local path made absolute, else as given."""
    path = Path(spec).expanduser()
    if not spec.startswith("bundled:") and path.exists():
        return str(path.resolve())
    return spec


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("whisper-lora", "torch", "transformers", "peft", "accelerate", "numpy", "wandb"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def training_config(options: TrainOptions, precision: str, data: dict, language: str | None,
                    timestamp_share: float) -> dict:
    return {
        "base_model": base_model_spec(options.model_name_or_path),
        "flags": options.as_dict(),
        "resolved": {"precision": precision, "language": language, "timestamp_share": timestamp_share,
                     "eval_steps": options.resolved_eval_steps,
                     "lora_target_regex": lora_target_regex(options.lora_target_modules, options.freeze_encoder),
                     "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
        "command": sys.argv,
        "library_versions": library_versions(),
        "data": data,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _baseline(history: list[dict]) -> dict | None:
    for entry in history:
        if entry.get("step") == 0 and "eval_loss" in entry:
            return _eval_only(entry)
    return None


def _best_eval(history: list[dict], best_step: int | None) -> dict | None:
    evals = [e for e in history if "eval_error_rate" in e and e.get("step", 0) > 0]
    if not evals:
        return None
    chosen = [e for e in evals if e.get("step") == best_step] or [min(evals, key=lambda e: e["eval_error_rate"])]
    return _eval_only(chosen[-1])


def _eval_only(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k.startswith("eval_") or k in ("step", "epoch")}


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
    tips.append("a smaller model (whisper-small or base)")
    return ("CUDA out of memory while training; try: " + "; ".join(tips) +
            ". Finished checkpoints in --output_dir are kept: add --resume_from_checkpoint latest.")
