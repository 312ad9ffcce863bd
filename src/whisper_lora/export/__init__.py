"""Export a model for another runtime: CTranslate2 (faster-whisper) or ggml (whisper.cpp).

A training output folder is merged first (merge.py); any other spec load_model understands is
resolved to a local HF folder (bundled, .pt and CTranslate2 models are converted to HF on the
way). The CTranslate2 converter writes model.bin, config.json (suppressed tokens, language ids,
alignment heads, read from the generation config) and vocabulary.json; faster-whisper also wants
tokenizer.json (its tokenizer) and preprocessor_config.json (mel bins), so both are copied in.
`--format ggml` writes one file, tokenizer and mel filters included (ggml.py).

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

from ..errors import ModelLoadError, OptionsError, WhisperLoraError
from .ggml import QUANTIZATIONS as GGML_QUANTIZATIONS

log = logging.getLogger(__name__)

FORMATS = ("ct2", "ggml")
# CTranslate2 weight types; faster-whisper converts at load time when the device needs another
# (e.g. float16 weights run as float32 on a CPU without fast half precision).
QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32",
                 "int8_bfloat16", "int16")
# The values --quantization takes for each format. ggml spells its types as whisper.cpp does
# (f16, not float16): q8_0 and q5_0 are its 8- and 5-bit block formats.
FORMAT_QUANTIZATIONS = {"ct2": QUANTIZATIONS, "ggml": GGML_QUANTIZATIONS}
# Half precision by default: half the size of float32 at no measurable accuracy cost.
DEFAULT_QUANTIZATION = {"ct2": "float16", "ggml": "f16"}
FASTER_WHISPER_FILES = ("tokenizer.json", "preprocessor_config.json")


@dataclass(frozen=True)
class ExportOptions:
    model_path: str  # training output folder, merged model folder, or any model spec (bundled:tiny.en, ...)
    # ct2: the folder to create, default <model_path>-ct2-<quantization>; ggml: the folder that gets
    # ggml-model-<quantization>.bin, default <model_path>-ggml (beside a folder spec, else in ./)
    output_dir: str | None = None
    format: str = "ct2"  # ct2: CTranslate2 for faster-whisper; ggml: one file for whisper.cpp
    # Weight type written, one of FORMAT_QUANTIZATIONS[format]; None: DEFAULT_QUANTIZATION[format]
    quantization: str | None = None
    cache_dir: str | None = None  # hub downloads and converted base models
    overwrite: bool = False  # replace output_dir when it already exists

    def __post_init__(self):
        if self.format not in FORMATS:
            raise OptionsError(f"--format {self.format}: supported formats are {', '.join(FORMATS)}")
        allowed = FORMAT_QUANTIZATIONS[self.format]
        if self.quantization is None:
            object.__setattr__(self, "quantization", DEFAULT_QUANTIZATION[self.format])
        elif self.quantization not in allowed:
            other = [f for f, values in FORMAT_QUANTIZATIONS.items() if self.quantization in values]
            hint = f" ({self.quantization} is a --format {other[0]} value)" if other else ""
            raise OptionsError(f"--quantization {self.quantization}: --format {self.format} takes "
                               f"{', '.join(allowed)}{hint}")
        out = self.target()
        if self.format == "ggml":
            if out.parent.exists() and not out.parent.is_dir():
                raise OptionsError(f"--output_dir {out.parent} is a file; --format ggml needs a folder to write "
                                   f"{out.name} into")
            if out.exists() and not self.overwrite:
                raise OptionsError(f"{out} already exists; choose another --output_dir or pass --overwrite")
        elif out.exists() and not self.overwrite and (not out.is_dir() or any(out.iterdir())):
            raise OptionsError(f"--output_dir {out} already exists and is not empty; choose another folder "
                               "or pass --overwrite")

    def target(self) -> Path:
        """What export writes: the ct2 folder, or the ggml file."""
        if self.output_dir:
            folder = Path(self.output_dir)
        else:
            source = Path(self.model_path)
            name = source.name if source.exists() else self.model_path.replace(":", "-").replace("/", "-")
            parent = source.resolve().parent if source.exists() else Path.cwd()
            suffix = "ggml" if self.format == "ggml" else f"{self.format}-{self.quantization}"
            folder = parent / f"{name}-{suffix}"
        return folder / f"ggml-model-{self.quantization}.bin" if self.format == "ggml" else folder


def export(options: ExportOptions) -> Path:
    """Convert options.model_path; return the ct2 folder or the ggml file (written atomically)."""
    from ..fileio import replace_folder

    if options.format == "ggml":
        return _export_ggml(options)
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


def _export_ggml(options: ExportOptions) -> Path:
    """The model (merged first when it is an adapter folder) as one whisper.cpp ggml file."""
    from .ggml import write_ggml
    from .merge import merged_model
    from ..models import is_adapter_folder, load_model

    if is_adapter_folder(options.model_path):
        model, processor = merged_model(options.model_path, options.cache_dir)
    else:
        model, processor = load_model(options.model_path, cache_dir=options.cache_dir)
    out = write_ggml(model, processor, options.target().resolve(), options.quantization)
    log.info("whisper.cpp ggml model (%s) written to %s", options.quantization, out)
    return out


def _hf_folder(options: ExportOptions, scratch: Path) -> Path:
    """A local HF Whisper folder for the spec, merging an adapter into scratch when needed."""
    from .merge import merged_model, save_merged
    from ..models import is_adapter_folder, resolve_hf_folder

    if is_adapter_folder(options.model_path):
        model, processor = merged_model(options.model_path, options.cache_dir)
        scratch.mkdir(parents=True)
        save_merged(model, processor, scratch)
        return scratch
    folder = resolve_hf_folder(options.model_path, options.cache_dir)
    if not Path(folder).is_dir():  # a hub id: fetch it (or find it in the cache) like load_model would
        from ..models import load_model

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
