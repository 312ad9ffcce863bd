"""Do a model's alignment heads still align words? And if not, which heads do: `whisper-lora align-heads`.

Word timestamps read a few cross-attention heads (the generation config's `alignment_heads`,
decoding/words.py). Those heads were found for OpenAI's weights; fine-tuning changes the weights
they read, and users of every fine-tuning tool report word times stuck at 00:00 after it. This
module measures how well heads align on speech whose timing is known, and finds the best heads
again from the user's own clips:

  1. Clips are joined, with pauses between them, into windows of at most 30 s: where each clip's
     speech starts in a window is known (its clip's loudness says where its speech begins).
  2. The window's text (the clips' transcripts, in order) is read by the decoder, teacher-forced,
     once, and the cross-attention of every head is kept (words.HFAligner.attention).
  3. Each head alone, and the model's head set together, aligns the text to the frames by DTW;
     a clip's speech starts where the path reaches the clip's first token. The error is how far
     that is from the known start, averaged over clips: the set's, and every head's.
  4. The heads with the smallest errors are the new set; `--save` writes it into the model
     folder's generation_config.json, where decoding, merging and export read it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..errors import OptionsError
from ..fileio import write_text
from ..data.joined import Window, join_clips

log = logging.getLogger(__name__)

MAX_CLIP_SECONDS = 12.0  # longer clips leave too few boundaries per window


@dataclass
class HeadReport:
    heads: list[tuple[int, int]]  # the model's alignment heads, as it has them
    set_error: float  # mean |start error| of that set together, seconds
    found: list[tuple[int, int]]  # the best heads found here, best first
    found_error: float  # the found set's error together
    errors: dict[tuple[int, int], float]  # every head's own error
    n_clips: int

    def describe(self) -> str:
        best = sorted(self.errors.items(), key=lambda kv: kv[1])[:12]
        lines = [f"{self.n_clips} clip starts in joined windows",
                 f"the model's alignment heads {_heads(self.heads)}: mean start error {self.set_error * 1000:.0f} ms",
                 f"the best heads found {_heads(self.found)}: mean start error {self.found_error * 1000:.0f} ms",
                 "each head alone (best 12): " + ", ".join(f"{l}.{h} {e * 1000:.0f} ms" for (l, h), e in best)]
        return "\n".join(lines)


def _heads(heads) -> str:
    return "[" + " ".join(f"{layer}.{head}" for layer, head in heads) + "]"


def head_errors(model, processor, windows: list[Window], language: str | None,
                heads: list[tuple[int, int]] | None = None) -> tuple[dict, float, int]:
    """({head: its own mean start error}, the error of `heads` together (default: the model's
    set), number of clip starts measured), in seconds."""
    import torch

    from .words import HFAligner, dtw

    whisper = model.get_base_model() if hasattr(model, "get_base_model") else model
    whisper.eval()
    aligner = HFAligner(whisper, heads)
    config = whisper.config
    every = [(layer, head) for layer in range(config.decoder_layers) for head in range(config.decoder_attention_heads)]
    sot = _start_sequence(whisper, language)
    tokenizer = processor.tokenizer
    errors = {h: [] for h in every}
    set_errors = []
    for window in windows:
        pieces = [tokenizer.encode(" " + t, add_special_tokens=False) for t in window.texts]
        first = np.cumsum([0] + [len(p) for p in pieces[:-1]])  # each clip's first token
        text = [t for p in pieces for t in p]
        features = processor.feature_extractor([window.audio], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            hidden = whisper.model.encoder(features.input_features.to(whisper.dtype)).last_hidden_state
        rows = [(sot, text, len(window.audio))]
        (matrices, _), = aligner.attention(hidden, rows, every)
        chosen = [every.index(h) for h in aligner.heads]
        truth = np.array(window.starts)
        for k, h in enumerate(every):
            errors[h] += list(np.abs(_starts(dtw(-matrices[k].double().numpy()), first) - truth))
        path = dtw(-matrices[chosen].mean(dim=0).double().numpy())
        set_errors += list(np.abs(_starts(path, first) - truth))
    return {h: float(np.mean(e)) for h, e in errors.items()}, float(np.mean(set_errors)), len(set_errors)


def _starts(path, first_tokens) -> np.ndarray:
    """Seconds at which the DTW path reaches each given token."""
    from .words import FRAMES_PER_SECOND

    text_indices, time_indices = path
    return np.array([time_indices[np.argmax(text_indices >= i)] for i in first_tokens]) / FRAMES_PER_SECOND


def _start_sequence(whisper, language: str | None) -> list[int]:
    gen = whisper.generation_config
    lang_to_id = getattr(gen, "lang_to_id", None)
    if not (getattr(gen, "is_multilingual", False) and lang_to_id):
        return [gen.decoder_start_token_id]
    if language is None:
        raise OptionsError("--language: this model is multilingual; say which language the clips are in")
    return [gen.decoder_start_token_id, lang_to_id[f"<|{language}|>"], gen.task_to_id["transcribe"]]


def find_heads(model, processor, windows: list[Window], language: str | None, top: int = 8) -> HeadReport:
    """The model's heads measured, and the `top` heads that align best on these windows."""
    whisper = model.get_base_model() if hasattr(model, "get_base_model") else model
    from .words import HFAligner

    current = HFAligner(whisper).heads
    errors, set_error, n = head_errors(model, processor, windows, language)
    found = [h for h, _ in sorted(errors.items(), key=lambda kv: kv[1])[:top]]
    _, found_error, _ = head_errors(model, processor, windows, language, heads=found)
    return HeadReport(current, set_error, found, found_error, errors, n)


def save_heads(folder: str | os.PathLike, heads: list[tuple[int, int]], model) -> Path:
    """Write heads into the folder's generation_config.json (the model's config, heads replaced)."""
    folder = Path(folder)
    whisper = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = whisper.generation_config
    config.alignment_heads = [list(h) for h in heads]
    path = folder / "generation_config.json"
    write_text(path, config.to_json_string())
    return path


def align_heads(model_spec: str, manifest: str | os.PathLike, language: str | None = None, top: int = 8,
                max_clips: int = 120, save: bool = False, cache_dir: str | None = None) -> HeadReport:
    """The whole command: measure the model's heads on the manifest's clips, find the best, and
    with save write them into the model folder (a training output or an HF model folder)."""
    from ..languages import language_code
    from ..data.manifest import read_manifest
    from ..models import load_model

    language = language_code(language, flag="--language")
    if top < 1:
        raise OptionsError(f"--top {top}: at least 1 head")
    if save and not Path(model_spec).is_dir():
        raise OptionsError(f"--save: {model_spec} is not a model folder to save the heads in; "
                           "give a training output folder or an HF model folder")
    rows = [r for r in read_manifest(manifest) if getattr(r, "audio_index", None) is None][:max_clips]
    clips = []
    for row in rows:
        audio = load_audio(row.audio_path)
        if len(audio) <= MAX_CLIP_SECONDS * SAMPLE_RATE and row.text:
            clips.append((audio, row.text))
    windows = join_clips(clips)
    if sum(len(w.starts) for w in windows) < 10:
        raise OptionsError(f"{manifest}: {len(clips)} usable clips (up to {MAX_CLIP_SECONDS:.0f} s, with text); "
                           "give at least 10 to measure the heads on")
    model, processor = load_model(model_spec, cache_dir=cache_dir)
    language = language or rows[0].language
    report = find_heads(model, processor, windows, language, top)
    if save:
        path = save_heads(model_spec, report.found, model)
        log.info("alignment heads %s written to %s", _heads(report.found), path)
    return report
