"""Transcribe audio files with any model spec: the library behind `whisper_lora_inference.py`
and `whisper-lora transcribe`.

    from whisper_lora.transcribe import Transcriber, TranscribeOptions
    t = Transcriber.from_spec("bundled:tiny.en", TranscribeOptions(batch_size=16))
    for result in t.transcribe_files(["a.wav", "b.mp3"]):   # FileResults, in input order
        print(result.path, result.text)

Files are read ahead a few batches at a time; of those, short files (<= 30 s) are sorted by
length and decoded in batches, long files are decoded whole (see decoding/hf.py and
decoding/ct2.py), and results come back in input order as soon as every earlier file is done.
A file that cannot be read gives a FileResult with `error` set; the others are still transcribed.

One module for one job, the transcription front door: the Transcriber, the command over a
file list and run_transcription, which hands sharded and resumed runs to shards/ (over 300 lines).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .decoding.biasing import decode_with_glossary
from .errors import AudioError, OptionsError
from .decoding.guards import is_quiet
from .decoding.results import Decoded, FileResult, RunSummary, Segment, join_segments
from .decoding.options import TranscribeOptions
from .data.glossary import Glossary
from .run_files import ADAPTER_CONFIG

log = logging.getLogger(__name__)

__all__ = ["FileResult", "Segment", "TranscribeOptions", "Transcriber", "RunSummary", "read_audio_list",
           "run_transcription", "transcribe"]

LONG_SECONDS = 30.0  # longer files go to decode_long (pieces cut at pauses, or sequential windows)
READ_AHEAD_BATCHES = 4  # files read ahead, in batches: enough to sort short files by length
READ_AHEAD_SECONDS = 1800.0  # but at most this much audio held in memory at once (~115 MB)
QUIET_MARGIN = 0.5  # seconds around a segment also checked for sound: its times are approximate


class Transcriber:
    """A loaded model plus options; turns audio into FileResults.

    Build it with `from_spec` (any model spec: bundled:NAME, hub id, HF / CTranslate2 folder,
    .pt checkpoint, training output folder) or `from_model` (a loaded transformers model and
    processor, e.g. straight from training)."""

    def __init__(self, backend, model_name: str, glossary: Glossary | None = None):
        self.backend = backend  # a decoding.backend.Backend: HFBackend or CT2Backend
        self.model_name = model_name
        if glossary is None and backend.options.glossary:
            glossary = Glossary.read(backend.options.glossary)
        if glossary is not None:
            self.check_glossary(glossary)
        self.glossary = glossary  # decode every file twice where its terms are heard (decoding/biasing.py)

    def check_glossary(self, glossary: Glossary) -> None:
        """Every term fits in this model's prompt (GlossaryError naming the line if not)."""
        glossary.check_tokens(self.backend.encode_text)

    @property
    def options(self) -> TranscribeOptions:
        """The options in force, with the language settled for the model (e.g. "en" on .en models)."""
        return self.backend.options

    @classmethod
    def from_spec(cls, spec: str | os.PathLike, options: TranscribeOptions | None = None) -> "Transcriber":
        options = options or TranscribeOptions()
        spec = str(spec)
        glossary = Glossary.read(options.glossary) if options.glossary else None  # its errors before the model loads
        if options.vad:  # before the model loads: a missing VAD model is found at once
            from .decoding.vad import require

            require()
        if options.lm:
            check_lm(spec, options.lm, options.backend)
        if choose_backend(spec, options.backend) == "ct2":
            from .decoding.ct2 import CT2Backend
            from .models import ct2_folder

            return cls(CT2Backend(ct2_folder(spec, options.cache_dir), options, model_name=spec), spec, glossary)
        from .models import is_adapter_folder, load_model

        model, processor = load_model(spec, cache_dir=options.cache_dir,
                                      merge=options.merge and is_adapter_folder(spec))
        return cls.from_model(model, processor, options, model_name=spec, glossary=glossary)

    @classmethod
    def from_model(cls, model, processor, options: TranscribeOptions | None = None,
                   model_name: str = "model", glossary: Glossary | None = None) -> "Transcriber":
        from .decoding.hf import HFBackend

        return cls(HFBackend(model, processor, options or TranscribeOptions(), model_name), model_name, glossary)

    def transcribe_array(self, audio: np.ndarray, path: str = "<array>") -> FileResult:
        """One mono float32 16 kHz array (any length) -> FileResult."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise AudioError(f"{path}: expected a non-empty 1-D array of 16 kHz samples, got shape {audio.shape}")
        duration = len(audio) / SAMPLE_RATE
        if is_quiet(audio, self.options):
            return _result(path, duration, self._silent())
        return _result(path, duration, self._drop_quiet_segments(audio, self._decode([audio], duration > LONG_SECONDS)[0]))

    def _decode(self, audios: list[np.ndarray], long: bool, glossary: Glossary | None = None) -> list[Decoded]:
        """Short (<= 30 s) or long audio decoded, twice where a glossary's terms are heard."""
        decoded = (self.backend.decode_long if long else self.backend.decode_short)(audios)
        glossary = glossary or self.glossary
        if glossary is None:
            return decoded
        return decode_with_glossary(self.backend, audios, decoded, glossary, long)

    def _silent(self) -> Decoded:
        return Decoded([], self.options.language, None)

    def _drop_quiet_segments(self, audio: np.ndarray, decoded: Decoded) -> Decoded:
        """Drop segments whose stretch of audio (with QUIET_MARGIN around it) is silent: text
        invented over a silent stretch of a long file, which the no-speech rule can miss. Word
        times are fitted to the sound (words.fit_to_sound)."""
        if self.options.word_timestamps:
            from .decoding.words import fit_to_sound

            decoded = Decoded(fit_to_sound(decoded.segments, audio), decoded.language, decoded.language_probability)
        if self.options.silence_threshold_db is None:
            return decoded
        kept = []
        for seg in decoded.segments:
            a = max(0, int((seg.start - QUIET_MARGIN) * SAMPLE_RATE))
            b = int((seg.end + QUIET_MARGIN) * SAMPLE_RATE)
            if not is_quiet(audio[a:max(b, a + 1)], self.options):
                kept.append(seg)
        if len(kept) == len(decoded.segments):
            return decoded
        return Decoded(kept, decoded.language, decoded.language_probability)

    def transcribe_arrays(self, audios: list[np.ndarray], names: list[str] | None = None,
                          glossary: Glossary | None = None) -> list[FileResult]:
        """Mono float32 16 kHz arrays (any lengths) -> FileResults in the same order, decoded
        together as transcribe_files decodes files: short ones packed and batched. glossary:
        instead of the Transcriber's (a server's request field), checked against the model."""
        names = names or [f"<array {i}>" for i in range(len(audios))]
        files = [(i, name, np.asarray(audio, dtype=np.float32)) for i, (name, audio) in
                 enumerate(zip(names, audios, strict=True))]
        if glossary is not None:
            self.check_glossary(glossary)
        done = dict(self._transcribe_read(files, glossary))
        return [done[i] for i in range(len(files))]

    def transcribe_files(self, paths: Iterable[str | os.PathLike]) -> Iterator[FileResult]:
        """Yield one FileResult per path, in input order, each as soon as it and all before it are done."""
        paths = [str(p) for p in paths]
        done: dict[int, FileResult] = {}
        next_out = 0
        for files in self._read_ahead(paths):
            for index, result in self._transcribe_read(files):
                done[index] = result
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1

    def _read_ahead(self, paths: list[str]):
        """Lists of (index, path, audio or AudioError): a few batches' worth of files at a time."""
        files, seconds = [], 0.0
        limit = max(READ_AHEAD_BATCHES * self.options.batch_size, self.backend.files_per_call)
        for index, path in enumerate(paths):
            try:
                audio = load_audio(path)
            except AudioError as exc:
                audio = exc
            files.append((index, path, audio))
            seconds += 0.0 if isinstance(audio, AudioError) else len(audio) / SAMPLE_RATE
            if len(files) >= limit or seconds >= READ_AHEAD_SECONDS:
                yield files
                files, seconds = [], 0.0
        if files:
            yield files

    def _transcribe_read(self, files, glossary: Glossary | None = None):
        """Yield (index, FileResult) for every file read ahead (_read_ahead); errors first, then batches."""
        short, long = [], []
        for index, path, audio in files:
            if isinstance(audio, AudioError):
                yield index, FileResult(path=path, error=str(audio))
            elif is_quiet(audio, self.options):
                yield index, _result(path, len(audio) / SAMPLE_RATE, self._silent())
            elif len(audio) / SAMPLE_RATE > LONG_SECONDS:
                long.append((index, path, audio))
            else:
                short.append((index, path, audio))
        # Longest first: files of similar length end their decoding at similar steps, and memory
        # peaks on the first batch, where it shows at once.
        for group, is_long, size in ((short, False, self.backend.files_per_call),
                                     (long, True, self.options.batch_size)):
            group.sort(key=lambda item: -len(item[2]))
            for start in range(0, len(group), size):
                batch = group[start:start + size]
                decoded = self._decode([audio for _, _, audio in batch], is_long, glossary)
                for (index, path, audio), dec in zip(batch, decoded):
                    yield index, _result(path, len(audio) / SAMPLE_RATE, self._drop_quiet_segments(audio, dec))


def _result(path: str, duration: float, decoded) -> FileResult:
    return FileResult(path=path, text=join_segments(decoded.segments), segments=list(decoded.segments),
                      language=decoded.language, language_probability=decoded.language_probability,
                      duration=duration)


def check_lm(spec: str, lm: str, backend: str = "auto") -> None:
    """--lm's errors before any model loads: an unreadable file, or a model it cannot steer."""
    from .data.lm import load

    load(lm)
    if choose_backend(spec, backend) == "ct2":
        raise OptionsError(f"--lm with {spec}: a CTranslate2 model's beam search takes no outside scores; "
                           "give the training output or an HF folder (transformers backend)")


def choose_backend(spec: str, backend: str) -> str:
    """auto -> ct2 for a CTranslate2 folder (model.bin, no config.json of an HF model), else hf."""
    if backend != "auto":
        return backend
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "model.bin").is_file() and not (path / ADAPTER_CONFIG).is_file():
        return "ct2"
    return "hf"


def read_audio_list(path: str | os.PathLike) -> list[str]:
    """A text file with one audio path per line; relative paths resolve against the list's folder;
    blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise OptionsError(f"--audio_list {path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise OptionsError(f"--audio_list {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        paths.append(str(p if p.is_absolute() else path.parent / p))
    if not paths:
        raise OptionsError(f"--audio_list {path}: no audio paths in it (blank and # lines are skipped)")
    return paths


def _echo(result: FileResult, n_files: int, timestamps: bool) -> str:
    head = f"### {result.path}\n" if n_files > 1 else ""
    if result.error:
        return f"{head}ERROR: {result.error}"
    if timestamps:
        from .decoding.writers import format_timestamp

        return head + "\n".join(f"[{format_timestamp(s.start)} --> {format_timestamp(s.end)}] {s.text}"
                                for s in result.segments)
    return head + result.text


def transcribe(model: str | os.PathLike, audio_paths: list[str], options: TranscribeOptions | None = None,
               output_file: str | os.PathLike | None = None, output_format: str | None = None,
               echo: bool = True, progress: bool = True) -> RunSummary:
    """The whole command: load the model, transcribe every file, write results as each finishes.

    output_file: written in the format of its extension (or output_format); srt/vtt/tsv turn
    timestamps on. echo: print each transcript to stdout (when there is no output file).
    progress: a progress bar on stderr with audio-seconds decoded per second."""
    from tqdm import tqdm

    from .decoding.writers import format_for, open_writer

    options = options or TranscribeOptions()
    if not audio_paths:
        raise OptionsError("no audio to transcribe: give --audio_path or --audio_list")
    writer = None
    if output_format is not None and output_file is None:
        raise OptionsError(f"--output_format {output_format}: give --output_file too (without it, transcripts "
                           "are printed as text)")
    if output_file is not None:
        fmt = format_for(output_file, output_format)
        if fmt in ("srt", "vtt", "tsv") and not options.return_timestamps:
            options = replace(options, return_timestamps=True)  # subtitles need times
    transcriber = Transcriber.from_spec(model, options)
    if output_file is not None:
        writer = open_writer(output_file, len(audio_paths), output_format,
                             meta={"model": str(model), "backend": transcriber.backend.name,
                                   "task": transcriber.options.task})
    results, audio_seconds = [], 0.0
    start = time.monotonic()
    bar = tqdm(total=len(audio_paths), unit="file", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for result in transcriber.transcribe_files(audio_paths):
            results.append(result)
            audio_seconds += result.duration or 0.0
            if writer is not None:
                writer.add(result)
            elif echo:
                print(_echo(result, len(audio_paths), transcriber.options.return_timestamps), flush=True)
            bar.update(1)
            bar.set_postfix_str(f"{audio_seconds / max(time.monotonic() - start, 1e-9):.1f} audio-s/s")
    finally:
        bar.close()
        if writer is not None:
            writer.close()  # also after an interruption: what was done stays on disk
    return RunSummary(results, audio_seconds, time.monotonic() - start)


def run_transcription(model: str | os.PathLike, audio_paths: list[str], options: TranscribeOptions | None = None,
                      output_file: str | os.PathLike | None = None, output_format: str | None = None,
                      resume: bool = False, progress: bool = True) -> RunSummary | None:
    """The transcribe command's front door: one process as transcribe() does it, or sharded /
    resumable (shards/) when launched by torchrun or asked to resume. None on ranks other than
    0 (rank 0 reports)."""
    from .shards import PartsFolder, launch_from_env, parts_folder_for, transcribe_sharded

    launch = launch_from_env()
    if not launch.distributed and not resume:
        if output_file is not None:
            PartsFolder(parts_folder_for(output_file)).refuse_leftovers()
        return transcribe(model, audio_paths, options, output_file=output_file, output_format=output_format,
                          progress=progress)
    return transcribe_sharded(lambda o: Transcriber.from_spec(model, o), model, audio_paths, options, output_file,
                              output_format, resume, progress, launch)
