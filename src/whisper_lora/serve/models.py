"""One base model in memory, several LoRA adapters beside it, and a Transcriber per way of decoding.

peft keeps each adapter's weights in the base model's layers under the adapter's name;
`set_adapter` picks the one that runs, and `disable_adapter` runs the base model alone. Only the
batcher's single worker thread decodes, so switching between batches is safe.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from ..decoding.options import DEFAULT_TEMPERATURES, TranscribeOptions
from ..errors import OptionsError
from ..data.glossary import Glossary
from ..streaming import live_options
from .options import ALL_MODELS, ServeOptions

log = logging.getLogger(__name__)

MAX_TRANSCRIBERS = 8  # distinct (model, task, language, temperature, timestamps, words, prompt) kept ready


@dataclass(frozen=True)
class Job:
    """How one request is decoded: requests with the same Job are decoded in one batch."""
    model: str  # the request's model name, resolved: the base name or an adapter's
    task: str = "transcribe"
    language: str | None = None
    temperature: float = 0.0
    timestamps: bool = False
    words: bool = False  # word timestamps (timestamp_granularities[] word)
    prompt: str | None = None  # the request's prompt: text as if said just before the audio
    glossary: Glossary | None = None  # the request's terms, or its model's default glossary
    live: bool = False  # a live stream's buffer: decoded alone in its window, one temperature (no wait)

    def options(self, serve: ServeOptions) -> TranscribeOptions:
        # OpenAI's temperature 0 means "raise it on failure", as openai-whisper's fallback does;
        # a higher one starts the fallback there.
        temperatures = tuple(t for t in DEFAULT_TEMPERATURES if t >= self.temperature) or (1.0,)
        if self.temperature not in temperatures:
            temperatures = (self.temperature, *temperatures)
        options = TranscribeOptions(language=self.language, task=self.task, return_timestamps=self.timestamps,
                                    temperatures=temperatures, device=serve.device, precision=serve.precision,
                                    cache_dir=serve.cache_dir, word_timestamps=self.words, initial_prompt=self.prompt)
        return live_options(options) if self.live else options


class ModelSet:
    """The base model, its adapters by name, and the Transcribers that decode with them."""

    def __init__(self, model, processor, options: ServeOptions, adapters: list[str]):
        self.model = model  # a PeftModel when there are adapters, else plain Whisper
        self.processor = processor
        self.options = options
        self.adapters = adapters
        gen = model.generation_config
        self.multilingual = bool(getattr(gen, "is_multilingual", False) and getattr(gen, "lang_to_id", None))
        self._transcribers: OrderedDict[Job, object] = OrderedDict()
        self.glossaries = {name: self.checked(Glossary.read(path, f"--glossary {name}=" if name != ALL_MODELS
                                                            else "--glossary"))
                           for name, path in options.glossaries.items()}

    def checked(self, glossary: Glossary) -> Glossary:
        """The glossary, its terms checked against the prompt's length (GlossaryError if one is too long)."""
        glossary.check_tokens(lambda text: self.processor.tokenizer.encode(text, add_special_tokens=False))
        return glossary

    def default_glossary(self, name: str) -> Glossary | None:
        """The glossary of a served model's requests that send none."""
        return self.glossaries.get(name, self.glossaries.get(ALL_MODELS))

    @classmethod
    def load(cls, options: ServeOptions) -> "ModelSet":
        from ..models import is_adapter_folder, load_model, no_loading_bars

        for name, path in options.adapters.items():
            if not is_adapter_folder(path):
                raise OptionsError(f"--adapter {name}={path}: not a training output folder (no adapter_config.json)")
        fine_tuned = is_adapter_folder(options.model)
        if fine_tuned and options.adapters:
            raise OptionsError(f"--model {options.model} is an adapter; to serve it beside others, pass its base "
                               f"model as --model and it as --adapter NAME={options.model}")
        # A training output folder alone is served merged: the fine-tuned model is the base.
        with no_loading_bars():
            model, processor = load_model(options.model, cache_dir=options.cache_dir, merge=fine_tuned)
            if options.adapters:
                model = _attach(model, options)
        return cls(model, processor, options, list(options.adapters))

    @property
    def names(self) -> list[str]:
        return [self.options.base_name, *self.adapters]

    def resolve(self, name: str) -> str | None:
        """The request's model name as served (the base's spec also names the base); None: unknown."""
        if name in (self.options.base_name, self.options.model):
            return self.options.base_name
        return name if name in self.adapters else None

    def transcribe(self, job: Job, audios: list, names: list[str]) -> list:
        """FileResults for audios (16 kHz float32 arrays), decoded together with job's model."""
        with self._active(job.model):
            return self._transcriber(replace(job, glossary=None)).transcribe_arrays(audios, names, job.glossary)

    @contextlib.contextmanager
    def _active(self, name: str):
        if not self.adapters:
            yield
        elif name == self.options.base_name:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(name)
            yield

    def _transcriber(self, job: Job):
        from ..transcribe import Transcriber

        if job in self._transcribers:
            self._transcribers.move_to_end(job)
        else:
            self._transcribers[job] = Transcriber.from_model(self.model, self.processor, job.options(self.options),
                                                             model_name=job.model)
            if len(self._transcribers) > MAX_TRANSCRIBERS:
                self._transcribers.popitem(last=False)
        return self._transcribers[job]


def _attach(base, options: ServeOptions):
    """The base model wrapped by peft with every adapter loaded under its name."""
    from peft import PeftModel

    from ..models import base_model_of, quiet_peft_warnings, resolve_hf_folder

    quiet_peft_warnings()
    ours = resolve_hf_folder(options.model, options.cache_dir)
    model = None
    for name, path in options.adapters.items():
        trained_on = base_model_of(path)
        if trained_on != options.model and resolve_hf_folder(trained_on, options.cache_dir) != ours:
            raise OptionsError(f"--adapter {name}={path}: trained on {trained_on}, not on the served base "
                               f"{options.model}; serve it with --model {trained_on}")
        if model is None:
            model = PeftModel.from_pretrained(base, str(Path(path)), adapter_name=name)
        else:
            model.load_adapter(str(Path(path)), adapter_name=name)
        log.info("adapter %s: %s", name, path)
    model.eval()
    return model
