"""audio.py: every common format decodes to mono float32 at 16 kHz with the right length, and
every broken file raises AudioError naming the file."""

from __future__ import annotations

import re

import av
import numpy as np
import pytest
import soundfile

from whisper_lora.audio import SAMPLE_RATE, audio_duration, load_audio, load_audio_bytes
from whisper_lora.errors import AudioError

SENTENCE = "We will meet at the station at nine o'clock."


@pytest.fixture(scope="module")
def speech(say):
    """(wav path, float32 samples, sample rate) of espeak-ng speech (22.05 kHz mono)."""
    path = say(SENTENCE)
    samples, rate = soundfile.read(path, dtype="float32")
    return path, samples, rate


def encode_with_pyav(samples, rate, path, codec, container=None, codec_rate=None):
    """Write mono `samples` to `path` with one of the encoders in PyAV's bundled FFmpeg."""
    codec_rate = codec_rate or rate
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=codec_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = rate
        # Convert to the encoder's sample format, rate and frame size.
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=codec_rate, frame_size=stream.codec_context.frame_size or None)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))


def write_soundfile(samples, rate, path, **kw):
    soundfile.write(path, samples, rate, **kw)


# name, writer, lossless
FORMATS = [
    ("wav", lambda x, r, p: write_soundfile(x, r, p), True),
    ("flac", lambda x, r, p: write_soundfile(x, r, p), True),
    ("ogg", lambda x, r, p: write_soundfile(x, r, p, format="OGG", subtype="VORBIS"), False),
    ("mp3", lambda x, r, p: encode_with_pyav(x, r, p, "libmp3lame"), False),
    ("m4a", lambda x, r, p: encode_with_pyav(x, r, p, "aac", container="mp4"), False),
    ("opus", lambda x, r, p: encode_with_pyav(x, r, p, "libopus", container="ogg", codec_rate=48000), False),
    ("webm", lambda x, r, p: encode_with_pyav(x, r, p, "libopus", container="webm", codec_rate=48000), False),
]


def best_correlation(a, b, max_lag):
    """Highest normalised correlation of a and b over shifts up to max_lag samples (codec delays)."""
    n = min(len(a), len(b)) - 2 * max_lag
    ref = a[max_lag:max_lag + n]
    best = 0.0
    for lag in range(2 * max_lag + 1):
        other = b[lag:lag + n]
        best = max(best, float(np.dot(ref, other) / (np.linalg.norm(ref) * np.linalg.norm(other) + 1e-9)))
    return best


@pytest.mark.parametrize("suffix, write, lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_decodes_to_16k_mono_of_the_right_length(speech, tmp_path, suffix, write, lossless):
    source, samples, rate = speech
    expected_seconds = len(samples) / rate
    path = tmp_path / f"speech.{suffix}"
    write(samples, rate, path)

    decoded = load_audio(path)

    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # Lossy codecs add up to ~50 ms of encoder delay/padding (AAC priming is 1024 samples).
    tolerance = 0.002 if lossless else 0.06
    assert len(decoded) / SAMPLE_RATE == pytest.approx(expected_seconds, abs=tolerance)
    assert audio_duration(path) == pytest.approx(expected_seconds, abs=tolerance)
    reference = load_audio(source)
    if lossless:
        np.testing.assert_allclose(decoded, reference, atol=1e-3)
    else:  # the same speech, give or take the codec's delay
        assert best_correlation(reference, decoded, max_lag=SAMPLE_RATE // 10) > 0.8


@pytest.mark.parametrize("suffix, write, lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_bytes_decode_in_memory_as_the_file_does(speech, tmp_path, suffix, write, lossless):
    # The server decodes uploads from their bytes, without a name to go by: the content decides.
    _, samples, rate = speech
    path = tmp_path / f"speech.{suffix}"
    write(samples, rate, path)
    from_bytes, from_file = load_audio_bytes(path.read_bytes(), "upload"), load_audio(path)
    if lossless:
        np.testing.assert_array_equal(from_bytes, from_file)
    else:  # libsndfile may decode MP3/Opus where the file path goes to FFmpeg: the same sound
        assert len(from_bytes) == pytest.approx(len(from_file), abs=0.06 * SAMPLE_RATE)
        assert best_correlation(from_file, from_bytes, max_lag=SAMPLE_RATE // 10) > 0.95


@pytest.mark.parametrize("data, words", [(b"", "empty"), (b"RIFF" + b"\0" * 40, "cannot decode"),
                                         (b"<html>not audio</html>" * 20, "cannot decode")])
def test_bad_bytes_raise_audio_error_naming_the_upload(data, words):
    with pytest.raises(AudioError, match=f"{words}.*clip.wav"):
        load_audio_bytes(data, "clip.wav")


def test_16k_mono_wav_is_returned_unchanged(speech, tmp_path):
    path = tmp_path / "16k.wav"
    soundfile.write(path, load_audio(speech[0]), SAMPLE_RATE, subtype="FLOAT")
    exact, _ = soundfile.read(path, dtype="float32")
    np.testing.assert_array_equal(load_audio(path), exact)


def test_stereo_44k_is_averaged_to_mono_and_resampled(speech, tmp_path):
    source, samples, rate = speech
    mono_44k = load_audio(source, sample_rate=44100)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([mono_44k, 0.5 * mono_44k], axis=1), 44100, subtype="FLOAT")

    decoded = load_audio(path)

    assert decoded.ndim == 1
    assert len(decoded) == pytest.approx(len(samples) * SAMPLE_RATE / rate, abs=2)
    assert audio_duration(path) == pytest.approx(len(samples) / rate, abs=1e-3)
    # (left + right) / 2 = 0.75 x: the mean of the channels, not the first channel alone
    reference = load_audio(source)
    n = min(len(decoded), len(reference))
    np.testing.assert_allclose(decoded[:n], 0.75 * reference[:n], atol=0.02)


def test_opposite_channels_cancel(speech, tmp_path):
    _, samples, rate = speech
    path = tmp_path / "opposite.wav"
    soundfile.write(path, np.stack([samples, -samples], axis=1), rate, subtype="FLOAT")
    assert np.abs(load_audio(path)).max() < 1e-6


def test_other_sample_rate_on_request(speech):
    source, samples, rate = speech
    assert len(load_audio(source, sample_rate=8000)) == pytest.approx(len(samples) * 8000 / rate, abs=2)


def test_wav_suffix_holding_mp3_data_falls_back_to_pyav(speech, tmp_path):
    _, samples, rate = speech
    mp3 = tmp_path / "real.mp3"
    encode_with_pyav(samples, rate, mp3, "libmp3lame")
    misnamed = tmp_path / "misnamed.wav"
    misnamed.write_bytes(mp3.read_bytes())
    assert len(load_audio(misnamed)) / SAMPLE_RATE == pytest.approx(len(samples) / rate, abs=0.06)


# --- broken files: name, how to make it (from a good FLAC/M4A), words the message must contain

def _damaged_flac(good, path):
    data = bytearray(good["flac"].read_bytes())
    data[2000:6000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _video_only_mp4(good, path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width = stream.height = 16
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


BROKEN = [
    ("missing.wav", None, "audio file not found"),
    ("empty.wav", lambda good, p: p.write_bytes(b""), "empty (0 bytes)"),
    ("header_only.wav", lambda good, p: p.write_bytes(good["wav"].read_bytes()[:44]), "has no samples"),
    ("noise.wav", lambda good, p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "cannot decode"),
    ("noise.mp3", lambda good, p: p.write_bytes(np.random.default_rng(2).bytes(5000)), "cannot decode"),
    ("text.m4a", lambda good, p: p.write_text("not audio\n" * 50), "cannot decode"),
    ("truncated.m4a", lambda good, p: p.write_bytes(good["m4a"].read_bytes()[:3000]), "cannot decode"),
    ("damaged.flac", _damaged_flac, "damaged audio data"),
    ("video_only.mp4", _video_only_mp4, "no audio stream"),
    ("folder.wav", lambda good, p: p.mkdir(), "not a regular file"),
]


@pytest.fixture(scope="module")
def good_files(speech, tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    _, samples, rate = speech
    files = {"wav": folder / "good.wav", "flac": folder / "good.flac", "m4a": folder / "good.m4a"}
    soundfile.write(files["wav"], samples, rate)
    soundfile.write(files["flac"], samples, rate)
    encode_with_pyav(samples, rate, files["m4a"], "aac", container="mp4")
    return files


@pytest.mark.parametrize("name, make, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_raises_audio_error_naming_it(good_files, tmp_path, name, make, words):
    path = tmp_path / name
    if make:
        make(good_files, path)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["missing.wav", "empty.wav", "header_only.wav", "noise.mp3", "folder.wav"])
def test_audio_duration_raises_for_files_without_audio(good_files, tmp_path, name):
    make = dict((b[0], b[1]) for b in BROKEN)[name]
    path = tmp_path / name
    if make:
        make(good_files, path)
    with pytest.raises(AudioError, match=re.escape(str(path))):
        audio_duration(path)
