"""Export a model for faster-whisper: CTranslate2's own converter on a merged HF model folder.

A training output folder is merged first (merge.py); any other spec load_model understands is
resolved to a local HF folder (bundled, .pt and CTranslate2 models are converted to HF on the
way). The CTranslate2 converter writes model.bin, config.json (suppressed tokens, language ids,
alignment heads, read from the generation config) and vocabulary.json; faster-whisper also wants
tokenizer.json (its tokenizer) and preprocessor_config.json (mel bins), so both are copied in.

Checked with ctranslate2 4.8.5 and transformers 5.23: TransformersConverter loads a local
v5-saved Whisper folder as it is (it passes `dtype=`, the v5 name), so no workaround is needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError, OptionsError, WhisperLoraError

log = logging.getLogger(__name__)

FORMATS = ("ct2",)
# CTranslate2 weight types; faster-whisper converts at load time when the device needs another
# (e.g. float16 weights run as float32 on a CPU without fast half precision).
QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32",
                 "int8_bfloat16", "int16")
FASTER_WHISPER_FILES = ("tokenizer.json", "preprocessor_config.json")


@dataclass(frozen=True)
class ExportOptions:
    model_path: str  # training output folder, merged model folder, or any model spec (bundled:tiny.en, ...)
    output_dir: str | None = None  # default: <model_path>-ct2-<quantization> beside a folder, else ./
    format: str = "ct2"  # only CTranslate2 (faster-whisper) for now
    quantization: str = "float16"  # weight type written; float16 halves the size at no accuracy cost
    cache_dir: str | None = None  # hub downloads and converted base models
    overwrite: bool = False  # replace output_dir when it already exists

    def __post_init__(self):
        if self.format not in FORMATS:
            raise OptionsError(f"--format {self.format}: supported formats are {', '.join(FORMATS)}")
        if self.quantization not in QUANTIZATIONS:
            raise OptionsError(f"--quantization {self.quantization}: choose one of {', '.join(QUANTIZATIONS)}")
        out = Path(self.target())
        if out.exists() and not self.overwrite and (not out.is_dir() or any(out.iterdir())):
            raise OptionsError(f"--output_dir {out} already exists and is not empty; choose another folder "
                               "or pass --overwrite")

    def target(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        source = Path(self.model_path)
        name = source.name if source.exists() else self.model_path.replace(":", "-").replace("/", "-")
        parent = source.resolve().parent if source.exists() else Path.cwd()
        return parent / f"{name}-{self.format}-{self.quantization}"


def export(options: ExportOptions) -> Path:
    """Convert options.model_path for faster-whisper; return the output folder (written atomically)."""
    from .fileio import replace_folder

    out = options.target().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        hf_folder = _hf_folder(options, work / "merged")
        converted = work / "ct2"
        convert_to_ct2(hf_folder, converted, options.quantization)
        replace_folder(converted, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("CTranslate2 model (%s) written to %s", options.quantization, out)
    return out


def _hf_folder(options: ExportOptions, scratch: Path) -> Path:
    """A local HF Whisper folder for the spec, merging an adapter into scratch when needed."""
    from .merge import merged_model, save_merged
    from .models import is_adapter_folder, resolve_hf_folder

    if is_adapter_folder(options.model_path):
        model, processor = merged_model(options.model_path, options.cache_dir)
        scratch.mkdir(parents=True)
        save_merged(model, processor, scratch)
        return scratch
    folder = resolve_hf_folder(options.model_path, options.cache_dir)
    if not Path(folder).is_dir():  # a hub id: fetch it (or find it in the cache) like load_model would
        from .models import load_model

        model, processor = load_model(options.model_path, cache_dir=options.cache_dir)
        scratch.mkdir(parents=True)
        save_merged(model, processor, scratch)
        return scratch
    return Path(folder)


def convert_to_ct2(hf_folder: str | os.PathLike, output_dir: str | os.PathLike, quantization: str) -> Path:
    """Run CTranslate2's TransformersConverter on a local HF Whisper folder and add the files
    faster-whisper needs. output_dir must not exist yet."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise WhisperLoraError("--format ct2 needs CTranslate2: pip install 'whisper-lora[ct2]' "
                               f"(ctranslate2 and faster-whisper); import failed: {exc}") from exc

    hf_folder, output_dir = Path(hf_folder), Path(output_dir)
    has_tokenizer_json = (hf_folder / "tokenizer.json").is_file()
    try:
        TransformersConverter(str(hf_folder), copy_files=["tokenizer.json"] if has_tokenizer_json else None
                              ).convert(str(output_dir), quantization=quantization)
    except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise WhisperLoraError(f"CTranslate2 could not convert {hf_folder}: {exc}") from exc
    if not has_tokenizer_json:  # saved by an older transformers: vocab.json + merges.txt only
        tokenizer = WhisperTokenizerFast.from_pretrained(str(hf_folder))
        tokenizer.backend_tokenizer.save(str(output_dir / "tokenizer.json"))
    try:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(str(hf_folder))
    except OSError as exc:
        raise ModelLoadError(f"{hf_folder}: no feature extractor config ({exc})") from exc
    feature_extractor.to_json_file(str(output_dir / "preprocessor_config.json"))
    missing = [name for name in FASTER_WHISPER_FILES + ("model.bin", "config.json")
               if not (output_dir / name).is_file()]
    if missing:
        raise WhisperLoraError(f"CTranslate2 export in {output_dir} lacks {missing}")
    return output_dir
