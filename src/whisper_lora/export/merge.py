"""Merge a trained LoRA adapter into its base model and save a plain Whisper model folder.

The merged folder loads with `WhisperForConditionalGeneration.from_pretrained` alone (no peft),
decodes as fast as the base model, and is what export/ converts for faster-whisper.
peft's safe merge adds each LoRA update to a copy of the weight and refuses it if any value
is NaN or infinite, so a diverged adapter never reaches the output. The merged model is then
checked against base + adapter on one forward pass before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, OptionsError, WhisperLoraError
from ..fileio import replace_folder

log = logging.getLogger(__name__)

MERGE_INFO = "merge_info.json"  # written next to the weights: where the merged model came from


@dataclass(frozen=True)
class MergeOptions:
    model_path: str  # training output folder: adapter_config.json + training_config.json (+ processor)
    output_dir: str  # folder to create with the merged model; must not exist unless overwrite
    cache_dir: str | None = None  # where hub downloads and converted base models are cached
    overwrite: bool = False  # replace output_dir when it already exists
    verify: bool = True  # compare merged and adapter logits on one input before saving

    def __post_init__(self):
        from ..models import is_adapter_folder

        if not Path(self.model_path).is_dir():
            raise OptionsError(f"--model_path {self.model_path}: no such folder")
        if not is_adapter_folder(self.model_path):
            raise OptionsError(f"--model_path {self.model_path}: not a training output folder (it has no "
                               "adapter_config.json), so there is no adapter to merge; a merged or plain "
                               "model folder can be used or exported as it is")
        out = Path(self.output_dir)
        if out.exists() and not self.overwrite and (not out.is_dir() or any(out.iterdir())):
            raise OptionsError(f"--output_dir {out} already exists and is not empty; choose another folder "
                               "or pass --overwrite")
        if out.resolve() == Path(self.model_path).resolve():
            raise OptionsError("--output_dir must differ from --model_path: the adapter would be overwritten")


def merged_model(model_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 verify: bool = True):
    """Return (merged WhisperForConditionalGeneration, processor) for a training output folder."""
    import torch

    from ..models import load_model

    model, processor = load_model(str(model_path), cache_dir=cache_dir)
    if not hasattr(model, "merge_and_unload"):
        raise ModelLoadError(f"{model_path}: loaded without an adapter; nothing to merge")
    probe = _probe_inputs(model) if verify else None
    before = _logits(model, probe) if verify else None
    try:
        merged = model.merge_and_unload(safe_merge=True)
    except ValueError as exc:  # peft: "NaNs detected in the merged weights ..."
        raise WhisperLoraError(f"{model_path}: the adapter cannot be merged: {exc}. The training run "
                               "probably diverged: retrain with a lower --learning_rate, or use an "
                               "earlier checkpoint-* folder") from exc
    bad = [name for name, p in merged.named_parameters() if not p.isfinite().all()]
    if bad:  # the base itself: safe_merge only checks the layers it merges
        raise WhisperLoraError(f"{model_path}: merged weights hold NaN or infinite values in {bad[:3]}")
    if verify:
        after = _logits(merged, probe)
        scale = max(1.0, before.abs().max().item())
        diff = (after - before).abs().max().item()
        # float32 sums agree to ~1e-5; half precision rounds each merged weight
        tolerance = 1e-3 if next(merged.parameters()).dtype == torch.float32 else 5e-2
        if diff > tolerance * scale:
            raise WhisperLoraError(f"{model_path}: the merged model differs from base + adapter "
                                   f"(max logit difference {diff:.3g}); the merge is wrong, not saved")
        log.info("merged: logits match base + adapter (max difference %.2g)", diff)
    merged.eval()
    return merged, processor


def _probe_inputs(model):
    """A fixed pseudo-random log-mel input and a few decoder tokens: enough to touch every layer."""
    import torch

    config = model.config
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, config.num_mel_bins, 2 * config.max_source_positions, generator=gen)
    tokens = torch.tensor([[config.decoder_start_token_id, 50, 100, 200]])
    param = next(model.parameters())
    return feats.to(device=param.device, dtype=param.dtype), tokens.to(param.device)


def _logits(model, probe):
    import torch

    feats, tokens = probe
    with torch.no_grad():
        return model(input_features=feats, decoder_input_ids=tokens).logits.float().cpu()


def save_merged(model, processor, folder: str | os.PathLike) -> None:
    """Write model (safetensors), generation config and processor into an existing folder."""
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    # faster-whisper and older transformers read the feature extractor from preprocessor_config.json
    processor.feature_extractor.to_json_file(str(Path(folder) / "preprocessor_config.json"))


def merge(options: MergeOptions) -> Path:
    """Merge the adapter of options.model_path into its base; return the output folder.

    The folder appears complete or not at all: everything is written into a hidden temporary
    folder beside it, which is then renamed."""
    from ..models import base_model_of

    model, processor = merged_model(options.model_path, options.cache_dir, verify=options.verify)
    out = Path(options.output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_merged(model, processor, tmp)
        info = {"adapter": str(Path(options.model_path).resolve()), "base_model": base_model_of(options.model_path)}
        (tmp / MERGE_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("merged model written to %s", out)
    return out


