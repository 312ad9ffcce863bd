"""The Hugging Face Trainer as training runs it: make_trainer builds it from the options, with the
trainer subclass, callbacks and metrics below.

WhisperTrainer changes two things in Seq2SeqTrainer: validation transcripts are generated with
each clip's own language (and the run's task) forced on the decoder, as transcription will do,
instead of letting the model guess it; and with a frozen encoder, training steps take the
encoder's output from an EncoderCache instead of running the encoder again. The batch's
`language` and `index` lists are kept out of the model's forward pass.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from transformers import EarlyStoppingCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import ProgressCallback

from ..decoding.hf_logits import quiet_generate_warnings
from ..devices import mps_available
from ..languages import CER_LANGUAGES
from ..run_files import CHECKPOINT_PREFIX, TRAINING_CONFIG
from ..scoring.metrics import Counts, error_rates
from ..tokens import IGNORE_INDEX
from .dataset import Collator, prompt_token_ids
from .encoder_cache import EncoderCache
from .options import TrainOptions
from .packing import WindowPacker

log = logging.getLogger(__name__)


def make_trainer(options: TrainOptions, model, processor, train_set, eval_set, output_dir: Path, precision: str,
                 cuda: bool, resume: Path | None, multilingual: bool, callbacks=()) -> WhisperTrainer:
    """The trainer for this run; `callbacks` (TrainerCallbacks) are added after its own."""
    quiet_generate_warnings()  # validation generates, and generate warns about choices made on purpose
    evaluate = eval_set is not None
    args = training_arguments(options, output_dir, precision, cuda, resume, evaluate)
    run = options.run_name or time.strftime("%b%d_%H-%M-%S") + "_" + platform.node()
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(output_dir / "runs" / run)  # `tensorboard --logdir output_dir/runs`
    packer = (WindowPacker(processor.feature_extractor, train_set.label_maker, train_set.max_label_length,
                           options.seed) if train_set.raw else None)
    trainer = WhisperTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=Collator(model.config.decoder_start_token_id, packer=packer,
                               prompt_ids=functools.partial(prompt_token_ids, processor.tokenizer)
                               if getattr(train_set, "prompts", None) is not None else None,
                               max_positions=model.config.max_target_positions,
                               pad_token_id=model.generation_config.pad_token_id),
        processing_class=processor,  # saved into every checkpoint, tokenizer included
        compute_metrics=compute_metrics_fn(processor.tokenizer, eval_set) if evaluate else None,
        callbacks=[tensorboard, FinalStepCallback(evaluate),
                   CheckpointExtrasCallback(output_dir, model.generation_config)],
        task=options.task, multilingual=multilingual, timestamps=options.timestamps,
        encoder_cache=EncoderCache() if options.freeze_encoder else None, label_smoothing=options.label_smoothing)
    if options.use_adalora:
        trainer.add_callback(AdaLoraBudgetCallback())
    if options.early_stopping_patience is not None:
        trainer.add_callback(EarlyStoppingCallback(options.early_stopping_patience))
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LossProgressCallback())
    for callback in callbacks:
        trainer.add_callback(callback)
    return trainer


def training_arguments(options: TrainOptions, output_dir: Path, precision: str, cuda: bool, resume: Path | None,
                       evaluate: bool) -> Seq2SeqTrainingArguments:
    """The options in the Trainer's terms, with what this machine and run resolve them to."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return Seq2SeqTrainingArguments(
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
        report_to=["wandb"] if options.use_wandb else [],  # TensorBoard is added by make_trainer, with its folder
        run_name=options.run_name, seed=options.seed,
        dataloader_num_workers=_workers(options, cuda, world_size), dataloader_pin_memory=cuda,
        remove_unused_columns=False, label_names=["labels"],  # peft's forward hides the label name
        ddp_backend=None if cuda else ("gloo" if world_size > 1 else None),
        ddp_find_unused_parameters=False,
    )


def _workers(options: TrainOptions, cuda: bool, world_size: int) -> int:
    if options.num_workers is not None:
        return options.num_workers
    # On a CPU the cores are busy training; a GPU waits for data unless workers decode it.
    # Up to 8: on an H100 four workers held base at ~110 clips/s whatever the precision or batch.
    return min(8, max(1, (os.cpu_count() or 2) // (2 * world_size))) if cuda else 0


def _checkpointing_args(enabled: bool) -> dict:
    """Gradient checkpointing, under the name this transformers version uses (renamed in 5.x).
    Non-reentrant: the reentrant variant loses the adapters' gradients when inputs need none."""
    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


class WhisperTrainer(Seq2SeqTrainer):
    def __init__(self, *args, task: str = "transcribe", multilingual: bool = True, timestamps: bool = False,
                 encoder_cache=None, label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        # Whisper's forward takes **kwargs, so the Trainer assumes it normalises its loss by
        # num_items_in_batch; it does not (it averages each batch itself), and the Trainer then
        # skips dividing by gradient_accumulation_steps: loss and gradients come out N times too
        # large (transformers 5.x). Saying the model takes no loss kwargs restores the division.
        self.model_accepts_loss_kwargs = False
        self.whisper_task = task
        self.whisper_multilingual = multilingual
        self.whisper_timestamps = timestamps
        self.encoder_cache = encoder_cache  # EncoderCache, only when the encoder is frozen
        # Here rather than TrainingArguments.label_smoothing_factor: the Trainer's smoother takes
        # the labels out of the forward pass, and Whisper builds its decoder input from them.
        self.label_smoothing = label_smoothing

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        indices = inputs.get("index")
        inputs = {k: v for k, v in inputs.items() if k not in ("language", "index")}
        # Training batches only: validation items have indices of their own set.
        if self.encoder_cache is not None and model.training and indices is not None:
            encoder = self.accelerator.unwrap_model(model).get_encoder()
            hidden = self.encoder_cache(encoder, inputs.pop("input_features"), list(indices))
            inputs["encoder_outputs"] = (hidden,)
        if self.label_smoothing and model.training:
            return self._smoothed_loss(model, inputs, return_outputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _smoothed_loss(self, model, inputs, return_outputs):
        import torch.nn.functional as F

        outputs = model(**inputs)
        logits, labels = outputs.logits, inputs["labels"]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                               ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        import torch

        languages = inputs.get("language")
        inputs = {k: v for k, v in inputs.items() if k not in ("language", "index")}
        if prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        from transformers.modeling_outputs import BaseModelOutput

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            with self.compute_loss_context_manager():
                outputs = model(**inputs)
            loss = outputs.loss.detach().mean()
            # The loss pass already ran the encoder on these windows: generate from its output
            # instead of encoding the same features a second time.
            encoded = BaseModelOutput(last_hidden_state=outputs.encoder_last_hidden_state)
            generate = dict(encoder_outputs=encoded,
                            max_length=self.args.generation_max_length,  # prefix included, as in HF
                            num_beams=self.args.generation_num_beams,
                            return_timestamps=self.whisper_timestamps,
                            use_cache=True)  # training turns the cache off; decoding needs it
            if self.whisper_multilingual:
                generate.update(language=list(languages), task=self.whisper_task)
            with self.compute_loss_context_manager():
                tokens = self.model.generate(**generate)
        if not isinstance(tokens, torch.Tensor):  # some generate paths return a dict-like output
            tokens = tokens["sequences"]
        return loss, tokens, inputs["labels"]


def compute_metrics_fn(tokenizer, eval_set):
    """compute_metrics for the Trainer: normalised WER and CER over the validation set, each row
    scored with its language's normaliser; error_rate is CER when most rows are in a language
    written without spaces (zh, ja, ...), else WER."""
    languages = eval_set.languages
    references = [row.text for row in eval_set.rows]
    end_token = eval_set.label_maker.tokens.end
    cer_first = sum(lang in CER_LANGUAGES for lang in languages) * 2 > len(languages)

    def compute_metrics(prediction) -> dict:
        predictions = np.asarray(prediction.predictions)
        predictions = np.where(predictions == IGNORE_INDEX, end_token, predictions)  # padding between processes
        hypotheses = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        hypotheses = [h.strip() for h in hypotheses][:len(references)]
        groups: dict = defaultdict(lambda: ([], []))
        for ref, hyp, lang in zip(references, hypotheses, languages):
            groups[lang][0].append(ref)
            groups[lang][1].append(hyp)
        words, chars = Counts(), Counts()
        for lang, (refs, hyps) in groups.items():
            scores = error_rates(refs, hyps, lang)
            words, chars = words + scores.words, chars + scores.chars
        for ref, hyp in list(zip(references, hypotheses))[:2]:
            log.info("  reference: %s\n  generated: %s", ref, hyp)
        wer, cer = words.rate, chars.rate
        return {"wer": wer, "cer": cer, "error_rate": cer if cer_first else wer, "metric": "cer" if cer_first else "wer",
                "utterances": len(hypotheses)}

    return compute_metrics


class FinalStepCallback(TrainerCallback):
    """Evaluate and save at the last step too, so the final adapter competes for "best" and the
    run ends with a checkpoint even when max_steps is no multiple of eval_steps/save_steps."""

    def __init__(self, evaluate: bool):
        self.evaluate = evaluate

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = True
            control.should_evaluate = self.evaluate
        return control


class AdaLoraBudgetCallback(TrainerCallback):
    """--use_adalora: move the rank budget after each optimizer step, while that step's gradients
    are still there (peft's update_and_allocate reads them; the Trainer zeroes them right after)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)
        return control


class CheckpointExtrasCallback(TrainerCallback):
    """Make each checkpoint-N a complete training output folder, so load_model, evaluate and
    merge accept it: the Trainer saves adapter, processor and optimizer; this adds the
    training_config.json naming the base model and the generation config with language/task."""

    def __init__(self, output_dir, generation_config):
        self.output_dir = output_dir
        self.generation_config = generation_config

    def on_save(self, args, state, control, **kwargs):
        import shutil

        if not state.is_world_process_zero:
            return control
        folder = Path(self.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        config = Path(self.output_dir) / TRAINING_CONFIG
        if folder.is_dir():
            if config.is_file():
                shutil.copyfile(config, folder / config.name)
            self.generation_config.save_pretrained(str(folder))
        return control


class LossProgressCallback(ProgressCallback):
    """transformers' progress bar (steps, elapsed, time left) with the latest loss beside it."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{logs[k]:.4g}" for k in ("loss", "eval_loss", "eval_wer") if isinstance(logs.get(k), float)}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)
        return super().on_log(args, state, control, logs=logs, **kwargs)
