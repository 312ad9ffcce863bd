"""One rank's run: its share of the file list (balanced by duration) into its part file; then
rank 0 writes the output file whole, in input order."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..audio import audio_duration
from ..decoding.options import TranscribeOptions
from ..decoding.results import RunSummary
from ..errors import AudioError, OptionsError
from .parts import PartsFolder, ShardError, all_results, parts_folder_for, run_header
from .ranks import Group, Launch, agree, launch_from_env, rank_device

log = logging.getLogger(__name__)


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


def transcribe_sharded(load: Callable[[TranscribeOptions], object], model, audio_paths: list[str],
                       options: TranscribeOptions | None, output_file, output_format: str | None = None,
                       resume: bool = False, progress: bool = True, launch: Launch | None = None) -> RunSummary | None:
    """This rank's share of the files into its part file; then rank 0 writes output_file whole.
    load(options) gives a transcribe.Transcriber of `model` (so this package needs none of its
    imports); model names the run in the parts' header and the output."""
    from ..decoding.writers import format_for

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
        return _run(load, model, paths, options, output_file, output_format, resume, progress, launch, group,
                    folder, header)
    finally:
        group.close()


def _run(load, model, paths, options, output_file, output_format, resume, progress, launch, group, folder, header):
    from tqdm import tqdm

    # Rank 0 alone reads and checks the folder, and the others wait for its verdict: nobody writes
    # a part before the done list is read.
    run, done = agree(group, lambda: (folder.open(header, resume), sorted(folder.done(paths))))
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
            transcriber = load(replace(options, device=rank_device(options.device, launch)))
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


def _transcribe_share(transcriber, paths: list[str], share: list[int], part: Path, bar) -> None:
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
    from ..decoding.writers import SubtitleWriter, open_writer

    results = all_results(folder, paths)
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
