"""Transcription split across processes (torchrun, accelerate launch) and resumable after a kill.

    torchrun --nproc_per_node 2 -m whisper_lora transcribe --model M --audio_list list.txt --output_file out.json
    torchrun --nproc_per_node 2 -m whisper_lora transcribe ... --output_file out.json --resume   # after a kill

Under a distributed launch (WORLD_SIZE > 1 in the environment) every process ("rank") takes a
share of the file list, balanced by audio duration, and runs on its own device (cuda:LOCAL_RANK
where there are GPUs, else the CPU). Each rank appends every FileResult, as one JSON line with its
input index, to a part file of its own in OUTPUT.parts/, flushed per line, so a killed job keeps
every file it finished. When every rank is done, rank 0 writes the one output file in input
order with the normal writer and removes the parts.

--resume reads the parts a killed run left (a torn last line is ignored), skips the files they
hold and does the rest; single-process runs with --resume keep parts the same way. The folder's
header.json records the file list's hash, the model and the options, and a mismatch is refused:
a part from another run is never silently reused. Files that failed (error entries) are tried again.

A file's text can depend on the files decoded before and beside it in the same process: the
temperature fallback samples from the process's random state, and packing and int8 activation
scales couple the files of a window or batch. Files Whisper is sure of come out as one process
writes them; the ones it is unsure of may be worded differently, as with another --batch_size.

The parts folder must be on a filesystem every rank sees, as the audio already is. Ranks talk
over gloo whatever their device: they exchange only a few small Python objects (the done list,
durations, a status), never tensors, so gloo works on every machine and needs no device setup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

from .audio import audio_duration
from .decoding.options import TranscribeOptions
from .decoding.results import FileResult
from .errors import AudioError, OptionsError, WhisperLoraError
from .fileio import write_json
from .transcribe import RunSummary, Transcriber, transcribe

log = logging.getLogger(__name__)

__all__ = ["Launch", "launch_from_env", "split_by_duration", "PartsFolder", "run_transcription",
           "transcribe_sharded"]

HEADER = "header.json"
PARTS_VERSION = 1  # bump when the part lines or the header change shape
# How long a rank that finished its share waits for the others. A rank that dies closes its gloo
# sockets and the wait fails at once, so this only bounds a rank that hangs; shares are balanced,
# but one long file can keep a rank busy for hours after the rest.
WAIT_FOR_RANKS = timedelta(hours=48)
# Options that change speed or placement but not what is written: a resumed run may change them
# (e.g. a smaller --batch_size after running out of memory).
NOT_IN_HEADER = ("device", "batch_size", "cache_dir")


class ShardError(WhisperLoraError):
    """Another rank failed, or the parts of a run cannot be used."""


@dataclass(frozen=True)
class Launch:
    rank: int  # this process's place among all processes, 0..world_size-1
    world_size: int  # how many processes share the file list
    local_rank: int  # this process's place on its machine: picks its GPU

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_from_env(env=None) -> Launch:
    """The launch torchrun / accelerate launch describe in RANK, WORLD_SIZE, LOCAL_RANK; one
    process when they are absent."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise OptionsError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r} RANK={env.get('RANK')!r} "
                           f"LOCAL_RANK={env.get('LOCAL_RANK')!r}: not whole numbers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise OptionsError(f"WORLD_SIZE={world} RANK={rank}: RANK must be in 0..WORLD_SIZE-1")
    return Launch(rank, world, local)


def rank_device(device: str, launch: Launch) -> str:
    """Each rank on its own GPU: auto or cuda -> cuda:LOCAL_RANK (modulo the GPUs visible) where
    there are GPUs; anything else (cpu, mps, an explicit cuda:N) as given."""
    import torch

    if launch.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{launch.local_rank % torch.cuda.device_count()}"
    return device


# ---- splitting the list ------------------------------------------------------------------------

def probe_seconds(path: str) -> float | None:
    """The file's length from its header (decoded only where the header states none); None when
    it cannot be read: it still goes to a rank, which reports the error as usual."""
    try:
        return audio_duration(path)
    except (AudioError, OSError):
        return None


def split_by_duration(indices: list[int], seconds: list[float | None], ranks: int) -> list[list[int]]:
    """Deal files out to `ranks` shares of near-equal total duration: longest first, each to the
    share with the least audio so far (ties: the lower rank). Files of unknown length weigh the
    median known length. Deterministic, so every rank computes the same split; each share is in
    input order."""
    known = sorted(s for s in seconds if s is not None)
    fill = known[len(known) // 2] if known else 1.0
    weights = [fill if s is None else s for s in seconds]
    order = sorted(range(len(indices)), key=lambda k: (-weights[k], indices[k]))
    totals, shares = [0.0] * ranks, [[] for _ in range(ranks)]
    for k in order:
        r = min(range(ranks), key=lambda j: (totals[j], j))
        totals[r] += weights[k]
        shares[r].append(indices[k])
    return [sorted(s) for s in shares]


# ---- the parts folder --------------------------------------------------------------------------

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


# ---- the ranks talking -------------------------------------------------------------------------

class Group:
    """The few collective steps the ranks share; with one process each is a no-op."""

    def __init__(self, launch: Launch):
        self.launch = launch
        self._started_here = False
        if launch.distributed:
            import torch.distributed as dist

            _die_with_launcher()
            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                                        timeout=WAIT_FOR_RANKS)
                self._started_here = True

    def broadcast(self, value):
        """Rank 0's value, on every rank."""
        if not self.launch.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_all(self, value) -> list:
        """Every rank's value, in rank order, on every rank."""
        if not self.launch.distributed:
            return [value]
        import torch.distributed as dist

        out = [None] * self.launch.world_size
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self._started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _die_with_launcher() -> None:
    """Under torchrun, end this process when the launcher ends. torchrun starts each worker in a
    session of its own, so a SIGKILL to the launcher (or to its process group) would leave the
    ranks running on, writing into the parts folder that a --resume then reads and rank 0 removes."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for us when our parent exits
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.warning("could not tie this rank to its launcher (prctl errno %d)", ctypes.get_errno())
    elif os.getppid() == 1:  # the launcher was gone already, before the line above
        raise ShardError("the torchrun launcher of this rank has ended; stopping")


def _agree(group: Group, step) -> object:
    """Run step() on rank 0 and hand its value (or its error, raised on every rank) to all."""
    value, error = None, None
    if group.launch.rank == 0:
        try:
            value = step()
        except Exception as exc:  # raised below, once the others have heard of it
            error = exc
    got = group.broadcast((value, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if got[1] is not None:
        raise ShardError(f"rank {group.launch.rank}: stopped: rank 0 failed: {got[1]}")
    return got[0]


# ---- the command -------------------------------------------------------------------------------

def run_transcription(model: str | os.PathLike, audio_paths: list[str], options: TranscribeOptions | None = None,
                      output_file: str | os.PathLike | None = None, output_format: str | None = None,
                      resume: bool = False, progress: bool = True) -> RunSummary | None:
    """The transcribe command: one process as transcribe() does it, or sharded / resumable when
    launched by torchrun or asked to resume. None on ranks other than 0 (rank 0 reports)."""
    launch = launch_from_env()
    if not launch.distributed and not resume:
        if output_file is not None:
            PartsFolder(parts_folder_for(output_file)).refuse_leftovers()
        return transcribe(model, audio_paths, options, output_file=output_file, output_format=output_format,
                          progress=progress)
    return transcribe_sharded(model, audio_paths, options, output_file, output_format, resume, progress, launch)


def transcribe_sharded(model, audio_paths: list[str], options: TranscribeOptions | None, output_file,
                       output_format: str | None = None, resume: bool = False, progress: bool = True,
                       launch: Launch | None = None) -> RunSummary | None:
    """This rank's share of the files into its part file; then rank 0 writes output_file whole."""
    from .decoding.writers import format_for

    launch = launch or launch_from_env()
    options = options or TranscribeOptions()
    if not audio_paths:
        raise OptionsError("no audio to transcribe: give --audio_path or --audio_list")
    if output_file is None:
        what = "--resume" if resume else f"a run of {launch.world_size} processes"
        raise OptionsError(f"{what} needs --output_file: the ranks' results are put together there "
                           "(and the files done are kept beside it, in OUTPUT.parts/)")
    if format_for(output_file, output_format) in ("srt", "vtt", "tsv") and not options.return_timestamps:
        options = replace(options, return_timestamps=True)  # as transcribe() does: subtitles need times
    paths = [str(p) for p in audio_paths]
    folder = PartsFolder(parts_folder_for(output_file))
    header = run_header(model, paths, options)
    group = Group(launch)
    try:
        return _run(model, paths, options, output_file, output_format, resume, progress, launch, group,
                    folder, header)
    finally:
        group.close()


def _run(model, paths, options, output_file, output_format, resume, progress, launch, group, folder, header):
    from tqdm import tqdm

    # Rank 0 alone reads and checks the folder, and the others wait for its verdict: nobody writes
    # a part before the done list is read.
    run, done = _agree(group, lambda: (folder.open(header, resume), sorted(folder.done(paths))))
    finished = set(done)
    todo = [i for i in range(len(paths)) if i not in finished]
    seconds: dict[int, float | None] = dict.fromkeys(todo)  # one process: its share is everything
    if launch.distributed:
        mine = todo[launch.rank::launch.world_size]  # each rank probes a stride of the list
        seconds = dict(kv for part in group.gather_all([(i, probe_seconds(paths[i])) for i in mine]) for kv in part)
    share = split_by_duration(todo, [seconds[i] for i in todo], launch.world_size)[launch.rank]
    if done:
        log.info("--resume: %d of %d files already done; %d to go", len(done), len(paths), len(todo))
    if launch.distributed:
        log.info("rank %d of %d: %d files, %.1f s of audio", launch.rank, launch.world_size, len(share),
                 sum(seconds[i] or 0.0 for i in share))

    error, transcriber = None, None
    try:
        if share or launch.rank == 0:  # rank 0 needs the model's facts for the output even with no share
            transcriber = Transcriber.from_spec(model, replace(options, device=rank_device(options.device, launch)))
        start = time.monotonic()  # as transcribe() reports it: model loading excluded
        _transcribe_share(transcriber, paths, share, folder.part_file(run, launch.rank),
                          tqdm(total=len(share), unit="file", disable=not progress or launch.rank != 0,
                               file=sys.stderr, dynamic_ncols=True,
                               desc=f"rank 0 of {launch.world_size}" if launch.distributed else None))
    except Exception as exc:  # reported to the other ranks below, then raised here
        error = exc
    statuses = group.gather_all(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, msg) for r, msg in enumerate(statuses) if msg is not None]
    if failed:
        r, msg = failed[0]
        raise ShardError(f"rank {r} failed: {msg}; the files finished are kept in {folder.path}: "
                         "rerun with --resume (whisper-lora transcribe) to do the rest")
    if launch.rank != 0:
        return None
    return _write_output(transcriber, model, paths, todo, folder, output_file, output_format, start)


def _transcribe_share(transcriber: Transcriber, paths: list[str], share: list[int], part: Path, bar) -> None:
    """Transcribe this rank's files, one JSON line per file as each finishes (flushed, so a kill
    loses at most the line being written)."""
    if not share:
        bar.close()
        return
    try:
        with open(part, "x", encoding="utf-8", newline="\n") as f:  # a new file: each run writes its own
            for index, result in zip(share, transcriber.transcribe_files([paths[i] for i in share])):
                f.write(json.dumps({"index": index, "result": result.to_dict()}, ensure_ascii=False) + "\n")
                f.flush()
                bar.update(1)
    finally:
        bar.close()


def _write_output(transcriber, model, paths, todo, folder, output_file, output_format, start) -> RunSummary:
    """Rank 0, once every rank is done: all parts -> the output file in input order; parts removed."""
    from .decoding.writers import SubtitleWriter, open_writer

    results = _all_results(folder, paths)
    writer = open_writer(output_file, len(paths), output_format,
                         meta={"model": str(model), "backend": transcriber.backend.name,
                               "task": transcriber.options.task})
    if isinstance(writer, SubtitleWriter):
        for result in results:
            writer.add(result)  # one subtitle file per input, each written as it is added
    else:
        # The whole list at once and one write at close: add() would rewrite the file per result.
        writer.results.extend(results)
    writer.close()
    folder.remove()
    # Audio of this run only, so that the realtime factor is this run's (a resumed run did less).
    seconds = sum(results[i].duration or 0.0 for i in todo)
    return RunSummary(results, seconds, time.monotonic() - start)


def _all_results(folder: PartsFolder, paths: list[str]) -> list[FileResult]:
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
