"""Hugging Face datasets as training input: a folder written by `save_to_disk`, or a dataset by
name (`load_dataset`: the hub when online, its cache or local data files otherwise).

A dataset's rows become the same Row objects a manifest gives (manifest.py), checked by the same
rules (validation.check_rows), so a saved dataset trains exactly as its manifest twin does and
gets the same drop report. Row N of a dataset is its Nth example (1-based, as manifest rows are).

Audio is never decoded by `datasets`: the audio column is read with Audio(decode=False), as
{"bytes", "path"}, and decoded by audio.py like every other file. Recent `datasets` decode with
torchcodec, which needs FFmpeg's shared libraries of a matching version and often cannot be
installed beside a given torch; our decoder (libsndfile, then PyAV's bundled FFmpeg) reads the
same formats with nothing more to install. Only the text columns and the audio's "path" field are
read up front; the bytes stay in the memory-mapped Arrow files until a data-loader worker asks.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np

from .. import audio
from ..errors import AudioError, ManifestError, OptionsError
from .manifest import Problem, Row, rows_from_entries
from .validation import ValidationReport, check_rows

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "sentence", "transcript", "transcription", "normalized_text", "raw_transcription")
LANGUAGE_COLUMNS = ("language", "locale", "lang")
SAVED_MARKERS = ("state.json", "dataset_dict.json")  # what save_to_disk writes in a Dataset / DatasetDict folder


def is_saved_dataset(path: str | os.PathLike | None) -> bool:
    """Whether path is a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return path is not None and any((Path(path) / m).is_file() for m in SAVED_MARKERS)


def _datasets():
    try:
        import datasets
    except ImportError:
        raise OptionsError("Hugging Face datasets need the datasets package: pip install 'whisper-lora[datasets]' "
                           "(or pip install datasets)") from None
    return datasets


def open_split(source: str, split: str, config: str | None = None, audio_column: str = "audio",
               streaming: bool = False, cache_dir: str | None = None):
    """One split of a dataset, its audio column undecoded. source: a save_to_disk folder (a Dataset,
    or a DatasetDict whose `split` is taken) or a name for load_dataset (hub id or local folder)."""
    datasets = _datasets()
    what = f"{source}" + (f" ({config})" if config else "")
    if is_saved_dataset(source):
        if streaming:
            raise OptionsError(f"--streaming: {source} is a save_to_disk folder, already on disk and memory-mapped; "
                               "leave --streaming out")
        data = datasets.load_from_disk(str(source))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise OptionsError(f"{source} has splits {', '.join(data)}; no split {split!r} "
                                   "(choose one with --train_split / --eval_split)")
            data = data[split]
    else:
        try:
            data = datasets.load_dataset(source, config, split=split, streaming=streaming, cache_dir=cache_dir)
        except (FileNotFoundError, ValueError, ConnectionError) as exc:
            raise OptionsError(f"--dataset_name {what}, split {split!r}: cannot load it: {exc}. Offline, give a "
                               "folder written by save_to_disk, or a folder of data files (parquet, csv, json, "
                               "audiofolder)") from None
    columns = list(data.column_names or (data.features or {}).keys())
    if audio_column not in columns:
        raise OptionsError(f"{what}: no audio column {audio_column!r} (columns: {', '.join(columns)}); "
                           "name it with --audio_column")
    return data.cast_column(audio_column, datasets.Audio(decode=False))


def text_column_of(columns: list[str], text_column: str | None, what: str) -> str:
    if text_column is not None:
        if text_column not in columns:
            raise OptionsError(f"{what}: no text column {text_column!r} (columns: {', '.join(columns)}); "
                               "name it with --text_column")
        return text_column
    found = next((c for c in TEXT_COLUMNS if c in columns), None)
    if found is None:
        raise OptionsError(f"{what}: no transcript column ({', '.join(TEXT_COLUMNS)}) among {', '.join(columns)}; "
                           "name it with --text_column")
    return found


def entry_of(example: dict, audio_column: str, text_column: str, language_column: str | None) -> dict:
    """A dataset example as a manifest row (the audio's own path stands in for audio_path)."""
    value = example[audio_column] or {}
    entry = {"audio_path": (value.get("path") if isinstance(value, dict) else None) or "(in the dataset)",
             "text": example[text_column]}
    if language_column and example.get(language_column):
        entry["language"] = example[language_column]
    if "segments" in example and example["segments"] is not None:
        entry["segments"] = example["segments"]
    return entry


class DatasetAudio:
    """Reads row i's audio out of the dataset: decode(row) -> 16 kHz samples, probe(row) -> seconds.

    Picklable (a memory-mapped Dataset pickles as the paths of its Arrow files), so DataLoader
    workers each read their own rows' bytes."""

    def __init__(self, data, audio_column: str, folder: str, decode: bool = True):
        self.data = data.select_columns([audio_column])
        self.column = audio_column
        self.folder = folder  # a relative path in the dataset resolves against this
        self.decode = decode  # probe decodes in full (True) or reads the header only

    def _value(self, row: Row) -> dict:
        return self.data[int(row.audio_index)][self.column] or {}

    def __call__(self, row: Row) -> np.ndarray:
        samples, rate = self._decoded(row)
        return audio.to_mono(samples, rate)

    def _decoded(self, row: Row) -> tuple[np.ndarray, int]:
        value = self._value(row)
        if value.get("bytes"):
            return audio.decode_bytes(value["bytes"], name=value.get("path") or f"row {row.number}")
        return audio.decode(self._path(value, row))

    def _path(self, value: dict, row: Row) -> str:
        path = value.get("path")
        if not path:
            raise AudioError(f"row {row.number}: the dataset holds neither audio bytes nor a path")
        return os.path.join(self.folder, path)

    def probe(self, row: Row) -> float:
        value = self._value(row)
        if not self.decode and value.get("bytes"):
            import soundfile

            try:
                info = soundfile.info(io.BytesIO(value["bytes"]))
                if info.frames > 0:
                    return info.frames / info.samplerate
            except (RuntimeError, soundfile.LibsndfileError):
                pass  # not a format libsndfile reads: decode it
        elif not self.decode:
            return audio.audio_duration(self._path(value, row))
        samples, rate = self._decoded(row)
        return len(samples) / rate


def dataset_rows(source: str, split: str, *, config: str | None = None, audio_column: str = "audio",
                 text_column: str | None = None, max_seconds: float | None = audio.CHUNK_LENGTH,
                 decode: bool = True, cache_dir: str | None = None) -> tuple[ValidationReport, DatasetAudio]:
    """Every example of one split checked as a manifest row is, and the reader of their audio.

    The report's good rows carry audio_index; read their audio with the DatasetAudio."""
    data = open_split(source, split, config, audio_column, cache_dir=cache_dir)
    folder = str(Path(source).absolute()) if Path(source).exists() else os.getcwd()
    return check_dataset(data, f"{source}[{split}]", folder, audio_column=audio_column, text_column=text_column,
                         max_seconds=max_seconds, decode=decode)


def streamed_head(source: str, split: str, rows: int, *, config: str | None = None, audio_column: str = "audio",
                  cache_dir: str | None = None):
    """The first `rows` examples of a streamed split, as an in-memory Dataset (audio undecoded):
    enough for a validation set, which is read again at every evaluation."""
    from itertools import islice

    stream = open_split(source, split, config, audio_column, streaming=True, cache_dir=cache_dir)
    # No features given: the audio column stays a plain {bytes, path} struct, as read (encoding it
    # as an Audio feature again would need torchcodec).
    return _datasets().Dataset.from_list(list(islice(stream, rows)))


def check_dataset(data, name: str, folder: str, *, audio_column: str = "audio", text_column: str | None = None,
                  max_seconds: float | None = audio.CHUNK_LENGTH,
                  decode: bool = True) -> tuple[ValidationReport, DatasetAudio]:
    """dataset_rows for a Dataset already open (audio column undecoded); name labels messages."""
    columns = list(data.column_names)
    text_col = text_column_of(columns, text_column, name)
    lang_col = next((c for c in LANGUAGE_COLUMNS if c in columns), None)
    wanted = [audio_column, text_col] + ([lang_col] if lang_col else [])
    wanted += ["segments"] if "segments" in columns else []
    # The audio column's path only: pyarrow reads that field without touching the audio bytes.
    table = data.select_columns(wanted).with_format("arrow")[:]  # memory-mapped: no copy of the audio
    paths = _audio_paths(table.column(audio_column))
    texts = table.column(text_col).to_pylist()
    others = {c: table.column(c).to_pylist() for c in wanted[2:]}
    entries = []
    for i in range(len(data)):
        example = {audio_column: {"path": paths[i]}, text_col: texts[i], **{c: v[i] for c, v in others.items()}}
        entries.append((i + 1, entry_of(example, audio_column, text_col, lang_col)))
    rows, problems = rows_from_entries(entries, Path(folder))
    # Rows as manifest.py made them, with the dataset's index for their audio; a path that names
    # the audio is kept for messages and duplicates, as a manifest's audio_path would be.
    rows = [Row(r.number, r.audio_path, r.text, r.language, r.segments, audio_index=r.number - 1) for r in rows]
    reader = DatasetAudio(data, audio_column, folder, decode)
    report = check_rows(name, len(entries), rows, problems, max_seconds, reader.probe)
    return report, reader


def _audio_paths(column) -> list[str | None]:
    try:
        return column.combine_chunks().field("path").to_pylist()
    except (AttributeError, KeyError, TypeError):  # an older pyarrow, or a string column of paths
        return [v.get("path") if isinstance(v, dict) else v for v in column.to_pylist()]


__all__ = ["dataset_rows", "open_split", "DatasetAudio", "is_saved_dataset", "entry_of", "text_column_of",
           "Problem", "ManifestError"]
