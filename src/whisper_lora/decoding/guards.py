"""openai-whisper's guards against Whisper's known failures, shared by both backends.

A window whose text compresses too well (gzip) is a repetition loop; one whose mean token
log-probability is low is unreliable: both are decoded again at a higher temperature. A window
where <|nospeech|> is likely and the text is unreliable is silence: its text is dropped. Audio
too faint to hold speech (is_quiet) is not decoded at all."""

from __future__ import annotations

import zlib

from .options import TranscribeOptions
from .results import Decoded


def compression_ratio(text: str) -> float:
    """len(text) / len(gzip(text)) on UTF-8 bytes, as openai-whisper measures repetition loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_silence(no_speech_prob: float, avg_logprob: float, opts: TranscribeOptions) -> bool:
    """openai-whisper's rule: <|nospeech|> is likely, and the text is not confidently decoded."""
    if opts.no_speech_threshold is None or no_speech_prob <= opts.no_speech_threshold:
        return False
    return opts.logprob_threshold is None or avg_logprob < opts.logprob_threshold


def verdict(decoded: list[Decoded], avg_logprobs, no_speech_probs, truncated: list[bool],
            opts: TranscribeOptions) -> list[bool]:
    """openai-whisper's verdict on each decoding of a batch: whether it is in trouble.

    Per decoding: its mean token log-probability, its <|nospeech|> probability, and whether it
    stopped at the length limit instead of at its end token. A decoding of silence (is_silence)
    has its segments dropped, here, in place: whatever was decoded over silence is invented. The
    others are in trouble when their text is a repetition loop, unreliable or cut off: the
    backend decodes them again hotter, or the caller does not trust them."""
    trouble = []
    for dec, avg_logprob, no_speech_prob, cut in zip(decoded, avg_logprobs, no_speech_probs, truncated):
        avg_logprob = float(avg_logprob)
        if is_silence(float(no_speech_prob), avg_logprob, opts):
            dec.segments = []
            trouble.append(False)
            continue
        text = " ".join(s.text for s in dec.segments)
        unreliable = opts.logprob_threshold is not None and avg_logprob < opts.logprob_threshold
        looping = (opts.compression_ratio_threshold is not None
                   and compression_ratio(text) > opts.compression_ratio_threshold)
        trouble.append(bool(looping or unreliable or cut))
    return trouble


def loudest_dbfs(audio, frame: int = 1600) -> float:
    """Level of the loudest 100 ms (1600 samples at 16 kHz) of audio, in dB below full scale."""
    import numpy as np

    audio = np.asarray(audio, dtype=np.float32)
    n = max(1, len(audio) // frame)
    frames = audio[: n * frame].reshape(n, -1) if len(audio) >= frame else audio.reshape(1, -1)
    rms = float(np.sqrt(np.max(np.mean(np.square(frames, dtype=np.float64), axis=1))))
    return 20 * np.log10(max(rms, 1e-10))


def is_quiet(audio, opts: TranscribeOptions) -> bool:
    """No 100 ms of the audio reaches opts.silence_threshold_db: nothing to transcribe.

    Whisper's own no-speech rule misses pure silence: tiny.en says " you" over 30 s of zeros
    with <|nospeech|> at 0.95 but a confident -0.4 mean log-probability."""
    return opts.silence_threshold_db is not None and loudest_dbfs(audio) < opts.silence_threshold_db
