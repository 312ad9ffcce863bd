"""OUTPUT.parts/: what a sharded or resumable run has finished, one part file per rank per run."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from ..decoding.options import TranscribeOptions
from ..decoding.results import FileResult
from ..errors import WhisperLoraError
from ..fileio import write_json

log = logging.getLogger(__name__)

HEADER = "header.json"
PARTS_VERSION = 1  # bump when the part lines or the header change shape
# Options that change speed or placement but not what is written: a resumed run may change them
# (e.g. a smaller --batch_size after running out of memory).
NOT_IN_HEADER = ("device", "batch_size", "cache_dir")


class ShardError(WhisperLoraError):
    """Another rank failed, or the parts of a run cannot be used."""


def parts_folder_for(output_file: str | os.PathLike) -> Path:
    return Path(f"{output_file}.parts")


def run_header(model: str | os.PathLike, paths: list[str], options: TranscribeOptions) -> dict:
    """What the parts of a run depend on: the file list, the model, the options that change text."""
    spec = str(model)
    if Path(spec).expanduser().exists():
        spec = str(Path(spec).expanduser().resolve())
    digest = hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest()
    opts = {k: v for k, v in asdict(options).items() if k not in NOT_IN_HEADER}
    opts = json.loads(json.dumps(opts))  # tuples -> lists, as they read back from the file
    return {"version": PARTS_VERSION, "files_sha256": digest, "n_files": len(paths), "model": spec,
            "options": opts}


class PartsFolder:
    """OUTPUT.parts/: header.json and one part file per rank per run, run-NNN-rank-NNNNN.jsonl,
    each line {"index": input index, "result": FileResult.to_dict()}. A run never appends to an
    older run's file, so a torn last line there stays the last line and is simply skipped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def part_files(self) -> list[Path]:
        """In run order, then rank order."""
        return sorted(self.path.glob("run-*-rank-*.jsonl"), key=_run_and_rank)

    def open(self, header: dict, resume: bool) -> int:
        """Check the folder against this run (create it when new); return this run's number."""
        if not resume:
            self.refuse_leftovers()
        if self.path.exists() and not self.path.is_dir():
            raise ShardError(f"{self.path} is in the way of the parts folder and is not a folder: move it away")
        old = self._read_header()
        if old is None:
            if self.part_files():
                raise ShardError(f"{self.path}: part files without {HEADER}; cannot tell what run made them: "
                                 "delete the folder to start over")
            write_json(self.path / HEADER, header)
            return 0
        self._check(old, header)
        return 1 + max((_run_and_rank(p)[0] for p in self.part_files()), default=-1)

    def refuse_leftovers(self) -> None:
        """A run without --resume does not overwrite or mix with what a killed run left."""
        if self.path.exists():
            raise ShardError(f"{self.path} holds the parts of an unfinished run: pass --resume "
                             "(whisper-lora transcribe) to finish it, or delete the folder to start over")

    def _read_header(self) -> dict | None:
        try:
            return json.loads((self.path / HEADER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ShardError(f"{self.path / HEADER}: unreadable ({exc}); delete {self.path} to start over") from None

    def _check(self, old: dict, new: dict) -> None:
        fix = f"rerun with the same ones, or delete {self.path} to start over"
        if old.get("version") != new["version"]:
            raise ShardError(f"--resume: {self.path} was written by another version of whisper-lora; "
                             f"delete it to start over")
        if (old.get("files_sha256"), old.get("n_files")) != (new["files_sha256"], new["n_files"]):
            raise ShardError(f"--resume: {self.path} belongs to a different file list ({old.get('n_files')} files "
                             f"then, {new['n_files']} now, or other paths or order); {fix}")
        if old.get("model") != new["model"]:
            raise ShardError(f"--resume: {self.path} was made with model {old.get('model')}, not {new['model']}; {fix}")
        changed = sorted(k for k in set(old.get("options", {})) | set(new["options"])
                         if old.get("options", {}).get(k) != new["options"].get(k))
        if changed:
            diff = ", ".join(f"{k}: {old.get('options', {}).get(k)!r} then, {new['options'].get(k)!r} now"
                             for k in changed)
            raise ShardError(f"--resume: {self.path} was made with other options ({diff}); {fix}")

    def done(self, paths: list[str]) -> dict[int, FileResult]:
        """Every file finished by earlier runs, by input index; error entries are left out so
        that they are tried again. A torn last line (the process was killed while writing it)
        is skipped; a bad line anywhere else is an error."""
        out: dict[int, FileResult] = {}
        for part in self.part_files():
            lines = part.read_bytes().split(b"\n")
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    index, result = int(entry["index"]), FileResult.from_dict(entry["result"])
                except (ValueError, KeyError, TypeError) as exc:
                    if number == len(lines):  # no newline after it: cut off by the kill
                        log.info("%s: skipping its torn last line", part)
                        continue
                    raise ShardError(f"{part}, line {number}: not a result line ({exc}); "
                                     f"delete {self.path} to start over") from None
                if not 0 <= index < len(paths) or result.path != paths[index]:
                    raise ShardError(f"{part}, line {number}: file #{index} {result.path!r} is not in this "
                                     f"file list; delete {self.path} to start over")
                if result.ok:
                    out.setdefault(index, result)
        return out

    def part_file(self, run: int, rank: int) -> Path:
        return self.path / f"run-{run:03d}-rank-{rank:05d}.jsonl"

    def remove(self) -> None:
        shutil.rmtree(self.path)


def _run_and_rank(part: Path) -> tuple[int, int]:
    """run-003-rank-00001.jsonl -> (3, 1)"""
    _, run, _, rank = part.stem.split("-")
    return int(run), int(rank)


def all_results(folder: PartsFolder, paths: list[str]) -> list[FileResult]:
    """Every file's result from the parts; the latest run's entry wins (an error entry retried)."""
    by_index: dict[int, FileResult] = {}
    for part in folder.part_files():  # in run order: later runs replace earlier error entries
        for line in part.read_bytes().split(b"\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # blank, or the torn last line of a killed run (done() checked the rest)
            by_index[int(entry["index"])] = FileResult.from_dict(entry["result"])
    missing = [paths[i] for i in range(len(paths)) if i not in by_index]
    if missing:
        raise ShardError(f"{folder.path}: no result for {len(missing)} of {len(paths)} files (first: {missing[0]}); "
                         "rerun with --resume to do them")
    return [by_index[i] for i in range(len(paths))]
