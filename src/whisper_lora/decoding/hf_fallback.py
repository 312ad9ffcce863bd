"""transformers' own decoding loop on an HFBackend's model: `generate` with temperature fallback
and no-speech detection, for the short files whose text failed the guards (decoded again at the
temperatures after the first) and for long audio with long_form "sequential".

Kept apart from hf.py because every file goes through hf.py's own decoding (the encoder once, one
first step, greedy or beam), while this loop serves only those two cases: it runs the encoder
itself, samples above temperature 0, and finds its own segments. The functions take the backend
whose model, options and prompt they decode with.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import long_form
from ..audio import N_SAMPLES, SAMPLE_RATE
from .options import FALLBACK_SEED
from .results import Decoded, Segment, clamped, moved


@contextlib.contextmanager
def seeded(device: str):
    """The fallback samples at temperatures above 0: seeded, so the same batch gives the same
    text in every run (it depended on whatever the process had drawn before), and without
    touching the caller's random state (training's, for one)."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(FALLBACK_SEED)
        yield


def retry(backend, audios, langs, failed: list[int], prompts, timestamps: bool):
    """The `failed` rows of a batch (indices into audios and langs) decoded again at the
    temperatures after the first: per failed row, in order, transformers' segment dicts.

    prompts: prompt ids per row, or None for backend.prompt_ids in every row."""
    opts = backend.options
    # Rows with a prompt of their own (glossary terms) go one by one: transformers'
    # fallback takes one prompt for its whole batch.
    groups = [failed] if prompts is None else [[i] for i in failed]
    redone = []
    for group in groups:
        with seeded(backend.device):
            redone += generate_with_fallback(
                backend, [audios[i] for i in group], [langs[i][0] for i in group],
                temperatures=opts.temperatures[1:], long=False, timestamps=timestamps,
                prompt_ids=None if prompts is None else prompts[group[0]])
    return redone


def generate_with_fallback(backend, audios, languages, temperatures, long: bool, timestamps: bool | None = None,
                           prompt_ids: list[int] | None = None):
    """transformers' own decoding with temperature fallback and no-speech detection.

    Returns, per audio, transformers' segment dicts (start, end, tokens). timestamps (short
    audio): timed segments, or one segment over the whole audio; None: options.return_timestamps.
    Long audio always has timestamps. prompt_ids: the prompt of every audio (None: backend.prompt_ids)."""
    opts = backend.options
    features, mask = backend._features(audios, long=long)
    timestamps = long or (opts.return_timestamps if timestamps is None else timestamps)
    prompt_ids = backend.prompt_ids if prompt_ids is None else prompt_ids
    prompt_length = len(prompt_ids) + 1 + (2 if backend.multilingual else 0) + (0 if timestamps else 1)
    prompt = backend._prompt_kwargs(prompt_ids)
    if prompt and long and (opts.hotwords or prompt_ids != backend.prompt_ids):
        # hotwords go before every window: transformers' "all-segments" prompt (the initial
        # prompt, given with them, then comes back in every window too)
        prompt["prompt_condition_type"] = "all-segments"
    with backend._decoding():
        out = backend.whisper.generate(
            features, attention_mask=mask, return_timestamps=timestamps,
            num_beams=opts.beam_size, temperature=temperatures,
            compression_ratio_threshold=opts.compression_ratio_threshold,
            logprob_threshold=opts.logprob_threshold, no_speech_threshold=opts.no_speech_threshold,
            condition_on_prev_tokens=(opts.condition_on_previous_text or "prompt_condition_type" in prompt) if long
            else False,
            suppress_tokens=None, begin_suppress_tokens=None, logits_processor=backend._processors(prompt_length),
            return_segments=True, **prompt, **backend._language_kwargs(languages),
            # Long audio leaves the length to transformers: the previous text's prompt (up to
            # 223 tokens) shares the 448 positions, and it fits max_new_tokens around it.
            **({} if long else {"max_new_tokens": backend._max_new_tokens(prompt_length)}))
    segments = out["segments"]
    if not timestamps:
        # Without timestamps, the single segment of a short file spans the whole window.
        return [[{**s, "start": 0.0, "end": len(a) / SAMPLE_RATE} for s in segs]
                for segs, a in zip(segments, audios)]
    return segments


def decode_sequential(backend, audios: list[np.ndarray], langs, prompt_ids=None) -> list[Decoded]:
    """transformers' sequential long-form decoding: 30-second windows one after another, each
    conditioned on the previous text (batched across files)."""
    durations = [len(a) / SAMPLE_RATE for a in audios]
    with seeded(backend.device):
        segments = generate_with_fallback(backend, audios, [code for code, _ in langs],
                                          temperatures=backend.options.temperatures, long=True,
                                          prompt_ids=prompt_ids)
    if backend.aligner is not None:
        return [Decoded(long_words(backend, audio, segs, code), code, prob)
                for audio, segs, (code, prob) in zip(audios, segments, langs)]
    return [Decoded(_segments_from_generate(backend, segs, d), code, prob)
            for segs, d, (code, prob) in zip(segments, durations, langs)]


def _segments_from_generate(backend, segs, duration: float) -> list[Segment]:
    return clamped(((seg["start"], seg["end"], backend._text(seg["tokens"])) for seg in segs), duration)


def long_words(backend, audio: np.ndarray, segs, language: str) -> list[Segment]:
    """Segments of a long file with word timestamps: consecutive segments are grouped into
    30-second windows, each window encoded once more and aligned (words.py)."""
    pieces = [(float(s["start"]), float(s["end"]), backend._text_ids(s["tokens"])) for s in segs]
    groups, out = [], []
    for piece in pieces:
        if groups and piece[1] - groups[-1][0][0] <= long_form.MAX_SECONDS:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    for group in groups:
        first = int(group[0][0] * SAMPLE_RATE)
        window = audio[first:first + N_SAMPLES]
        offset = first / SAMPLE_RATE
        decoded = Decoded([], language, None)
        local = [(a - offset, b - offset, ids) for a, b, ids in group]
        features, _ = backend._features([window])
        hidden = backend._encode(features)
        backend._add_words(hidden, [decoded], [local], [len(window)])
        out += moved(decoded.segments, offset, len(audio) / SAMPLE_RATE)
    return out
