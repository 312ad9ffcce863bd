"""The pieces train.py hands to the Hugging Face Trainer: the trainer subclass, callbacks and metrics.

WhisperTrainer changes two things in Seq2SeqTrainer: validation transcripts are generated with
each clip's own language (and the run's task) forced on the decoder, as transcription will do,
instead of letting the model guess it; and with a frozen encoder, training steps take the
encoder's output from an EncoderCache instead of running the encoder again. The batch's
`language` and `index` lists are kept out of the model's forward pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
from transformers import Seq2SeqTrainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from ..decoding.hf_logits import quiet_generate_warnings
from ..languages import CER_LANGUAGES
from ..run_files import CHECKPOINT_PREFIX, TRAINING_CONFIG
from ..scoring.metrics import Counts, error_rates
from ..tokens import IGNORE_INDEX

quiet_generate_warnings()  # validation generates too

log = logging.getLogger(__name__)


class WhisperTrainer(Seq2SeqTrainer):
    def __init__(self, *args, task: str = "transcribe", multilingual: bool = True, timestamps: bool = False,
                 encoder_cache=None, **kwargs):
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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        indices = inputs.get("index")
        inputs = {k: v for k, v in inputs.items() if k not in ("language", "index")}
        # Training batches only: validation items have indices of their own set.
        if self.encoder_cache is not None and model.training and indices is not None:
            encoder = self.accelerator.unwrap_model(model).get_encoder()
            hidden = self.encoder_cache(encoder, inputs.pop("input_features"), list(indices))
            inputs["encoder_outputs"] = (hidden,)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        import torch

        languages = inputs.get("language")
        inputs = {k: v for k, v in inputs.items() if k not in ("language", "index")}
        if prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            with self.compute_loss_context_manager():
                loss = model(**inputs).loss.detach().mean()
            generate = dict(input_features=inputs["input_features"],
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


class CheckpointExtrasCallback(TrainerCallback):
    """Make each checkpoint-N a complete training output folder, so load_model, evaluate and
    merge accept it: the Trainer saves adapter, processor and optimizer; this adds the
    training_config.json naming the base model and the generation config with language/task."""

    def __init__(self, output_dir, generation_config):
        self.output_dir = output_dir
        self.generation_config = generation_config

    def on_save(self, args, state, control, **kwargs):
        import shutil
        from pathlib import Path

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
