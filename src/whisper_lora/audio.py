"""Read any common audio file as Whisper wants it: mono float32 samples at 16 kHz.

WAV, FLAC, OGG (and the other formats libsndfile reads) go through soundfile; MP3, M4A/AAC,
OPUS, WEBM and anything else FFmpeg reads go through PyAV, whose wheels bundle FFmpeg, so no
ffmpeg binary is needed. Resampling is done by soxr. Every failure raises AudioError naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .errors import AudioError

# Whisper's front end: log-mel features of 16 kHz audio, in windows of at most 30 s.
SAMPLE_RATE = 16000  # Hz
CHUNK_LENGTH = 30  # seconds of audio the encoder sees at once
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
HOP_LENGTH = 160  # samples between log-mel frames (10 ms)
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 log-mel frames in a window

# Suffixes libsndfile decodes itself; anything else (or a file libsndfile rejects) goes to PyAV.
SOUNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".caf", ".w64"}


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to a 1-D float32 array: channels averaged to mono, resampled to `sample_rate`."""
    samples, rate = decode(path)
    return to_mono(samples, rate, sample_rate)


def to_mono(samples: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames,) or (frames, channels) samples at `rate` -> 1-D float32 at `sample_rate`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)  # average the channels: no channel is assumed to be the speech
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)  # soxr's default high quality
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode every sample at the file's own rate: ((frames, channels) float32, sample rate).

    Validation uses this to check a file reads to the end without paying for resampling."""
    path = _existing_file(path)
    reasons = []
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            sound = soundfile.SoundFile(path)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            reasons.append(f"soundfile: {_why(exc)}")  # e.g. a .wav that holds MP3 data: try FFmpeg too
        else:
            with sound:
                return _not_empty(path, _read_all(path, sound)), sound.samplerate
    import av  # here, not at the top: WAV/FLAC never need FFmpeg, and loading it costs start-up time

    try:
        samples, rate = _decode_with_pyav(path)
    except (av.FFmpegError, ValueError, IndexError) as exc:
        reasons.append(f"PyAV: {_why(exc)}")
        raise _error(path, "cannot decode audio file", "; ".join(reasons)) from exc
    return _not_empty(path, samples), rate


def load_audio_bytes(data: bytes, name: str = "upload", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Like load_audio, for a file's bytes (an upload), decoded in memory: no path is opened.

    `name` only labels error messages."""
    samples, rate = decode_bytes(data, name)
    return to_mono(samples, rate, sample_rate)


def decode_bytes(data: bytes, name: str = "upload") -> tuple[np.ndarray, int]:
    """decode() for bytes: libsndfile first (it tells WAV/FLAC/OGG by their content), then FFmpeg."""
    label = Path(name)
    if not data:
        raise _error(label, "audio file is empty (0 bytes)")
    reasons = []
    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        reasons.append(f"soundfile: {_why(exc)}")
    else:
        with sound:
            return _not_empty(label, _read_all(label, sound)), sound.samplerate
    import av

    try:
        samples, rate = _decode_with_pyav(io.BytesIO(data))
    except (av.FFmpegError, ValueError, IndexError) as exc:
        reasons.append(f"PyAV: {_why(exc)}")
        raise _error(label, "cannot decode audio file", "; ".join(reasons)) from exc
    return _not_empty(label, samples), rate


def audio_duration(path: str | os.PathLike) -> float:
    """Length in seconds, from the file's header when it states one, else by decoding it."""
    path = _existing_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            info = soundfile.info(path)
            if info.frames > 0 and info.samplerate > 0:
                return info.frames / info.samplerate
        except (soundfile.LibsndfileError, RuntimeError, ValueError):
            pass  # not what the suffix says: let PyAV or the decoder report it
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.audio:
                stream = container.streams.audio[0]
                if stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
                if container.duration:
                    return container.duration / av.time_base
    except (av.FFmpegError, ValueError):
        pass  # decode() below gives the reason
    samples, rate = decode(path)
    return len(samples) / rate


def _read_all(path: Path, sound: soundfile.SoundFile) -> np.ndarray:
    try:
        samples = sound.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise _error(path, "damaged audio data", _why(exc)) from exc
    # libsndfile can skip a damaged stretch without an error; the header's frame count tells.
    if 0 < len(samples) < sound.frames:
        raise _error(path, "damaged audio data",
                     f"decoded {len(samples)} of the {sound.frames} samples its header states")
    return samples


def _decode_with_pyav(source: Path | io.BytesIO) -> tuple[np.ndarray, int]:
    import av

    with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
        if not container.streams.audio:
            raise ValueError("the file has no audio stream")
        stream = container.streams.audio[0]
        # Convert whatever sample format the codec gives to float32, keeping rate and channels;
        # resampling and the downmix happen in to_mono, the same for both decoders.
        resampler = av.AudioResampler(format="fltp")
        chunks, rate = [], stream.rate
        for frame in container.decode(stream):
            rate = frame.sample_rate
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))  # flush
    if not chunks:
        return np.zeros((0, 1), dtype=np.float32), rate or SAMPLE_RATE
    return np.concatenate(chunks, axis=1).T, rate  # planar (channels, frames) -> (frames, channels)


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise _error(path, "audio file not found")
    if not path.is_file():
        raise _error(path, "audio path is not a regular file")
    if path.stat().st_size == 0:
        raise _error(path, "audio file is empty (0 bytes)")
    return path


def _not_empty(path: Path, samples: np.ndarray) -> np.ndarray:
    if samples.shape[0] == 0:
        raise _error(path, "audio file has no samples")
    return samples


def _why(exc: Exception) -> str:
    """The library's own words, without the errno and file name it repeats."""
    text = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().rstrip(".")


def _error(path: Path, reason: str, detail: str = "") -> AudioError:
    detail = f" ({detail})" if detail else ""
    exc = AudioError(f"{reason}: {path}{detail}")
    exc.reason = reason + detail  # manifest validation lists it next to the row's own path
    return exc
