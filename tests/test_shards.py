"""Sharded and resumable transcription (shards/): the file list split across torchrun processes
(2 CPU processes over gloo, as training's test), a job killed for real and resumed, and the
bookkeeping underneath: the duration split, the part files, the header check.

The runs use a tiny model made to answer " hello" and stop, with near-certainty. A plain random
model is unsure of every token, so the temperature fallback samples, and sampled text depends on
the random numbers drawn before, i.e. on which files a process happened to decode first: a
sharded run could never equal a single one. This model decodes the same text whatever came
before, in milliseconds; each entry still carries its own path and duration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whisper_lora.decoding.options import TranscribeOptions
from whisper_lora.decoding.results import FileResult, Segment, Word
from whisper_lora.errors import OptionsError
from whisper_lora.shards import (
    Launch, PartsFolder, ShardError, launch_from_env, parts_folder_for, run_header, split_by_duration)
from whisper_lora.transcribe import read_audio_list, run_transcription

ROOT = Path(__file__).resolve().parents[1]
# One thread per process (torchrun sets it too): two processes share the 2 cores.
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey").split()


@pytest.fixture(scope="session")
def sure_folder(tiny_random, tmp_path_factory):
    """The tiny random model, changed so that it always says " hello" and ends: the decoder's last
    layer norm outputs a constant vector b, and the (tied) output embeddings of " hello" and of
    the end token point along b, the end token's further (it wins once text has begun)."""
    import copy

    import torch

    model, processor = tiny_random
    model = copy.deepcopy(model)  # the session's model stays as other tests expect it
    dec, eos = model.model.decoder, model.config.eos_token_id
    hello = processor.tokenizer.encode(" hello", add_special_tokens=False)[0]
    with torch.no_grad():
        b = torch.randn(dec.layer_norm.bias.shape, generator=torch.Generator().manual_seed(1))
        dec.layer_norm.weight.zero_()
        dec.layer_norm.bias.copy_(b)
        dec.embed_tokens.weight[eos] = 50 * b
        dec.embed_tokens.weight[hello] = 40 * b
    folder = tmp_path_factory.mktemp("sure-model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clips(say):
    """20 espeak-ng clips of 1-5 s, of different lengths so that the split has something to balance."""
    return [say(" ".join(WORDS[: 2 + i % 9]) + f", number {i}.", speed=150 + 5 * (i % 4)) for i in range(20)]


def audio_list(folder: Path, paths, extra=("missing.wav",)) -> Path:
    """A list file; a missing file among them cannot be probed and must still get its error entry."""
    lines = [str(p) for p in paths]
    lines[len(lines) // 2:len(lines) // 2] = list(extra)
    path = folder / "list.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def command(model, listing, output, *flags, procs: int = 1, original: bool = False) -> list[str]:
    """whisper-lora transcribe (in float32, no progress bar), or whisper_lora_inference.py with
    the original README's flags only; under torchrun when procs > 1."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    if original:
        return [sys.executable, *launcher, str(ROOT / "whisper_lora_inference.py"), "--model_path", str(model),
                "--audio_list", str(listing), "--output_file", str(output), *flags]
    return [sys.executable, *launcher, "-m", "whisper_lora", "transcribe", "--model", str(model), "--audio_list",
            str(listing), "--output_file", str(output), "--fp32", "--quiet", *flags]


def run(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=dict(os.environ, **ENV))


def results_of(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["results"]


def part_lines(parts: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in parts.glob("run-*.jsonl"))


# ---- end to end: torchrun with 2 CPU processes ---------------------------------------------------

def test_two_processes_write_what_one_process_writes(sure_folder, clips, tmp_path):
    """The original script under torchrun (no flag needed) against it in one process, default options."""
    listing = audio_list(tmp_path, clips)
    one = run(command(sure_folder, listing, tmp_path / "one.json", original=True), tmp_path)
    two = run(command(sure_folder, listing, tmp_path / "two.json", procs=2, original=True), tmp_path)
    assert one.returncode == 1, one.stderr[-3000:]  # the missing file failed: exit status 1, as before
    assert two.returncode != 0 and "missing.wav" in two.stderr, two.stderr[-3000:]
    assert "transcribed 20 of 21 files" in two.stderr and two.stderr.count("transcribed ") == 1  # rank 0 reports

    a, b = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert a == b  # same entries, same order, same run facts
    assert [Path(r["path"]).name for r in b["results"]] == [Path(p).name for p in listing.read_text().split()]
    assert sum(r["error"] is not None for r in b["results"]) == 1
    assert all(r["text"] == "hello" for r in b["results"] if r["error"] is None)
    assert not parts_folder_for(tmp_path / "two.json").exists()  # the parts are removed once written whole

    # Both ranks did a share (not both the whole list), and the shares cover the list.
    shares = [line for line in two.stderr.splitlines() if line.startswith("rank ") and " files, " in line]
    assert len(shares) == 2, two.stderr[-3000:]
    counts = [int(line.split(": ")[1].split(" files")[0]) for line in shares]
    assert sum(counts) == 21 and min(counts) >= 5


def test_killed_job_resumes_and_writes_every_file_once(sure_folder, clips, tmp_path):
    """SIGKILL to the whole torchrun job once some files are done, then --resume: each file once,
    in input order, as an uninterrupted run writes it, and only the rest decoded."""
    paths = [*clips, *clips]  # 40 entries: the run lasts long enough to be killed midway
    listing = audio_list(tmp_path, paths)
    out = tmp_path / "out.json"
    parts = parts_folder_for(out)
    proc = subprocess.Popen(command(sure_folder, listing, out, "--batch_size", "1", "--no_pack", procs=2),
                            cwd=tmp_path, env=dict(os.environ, **ENV), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not (parts.is_dir() and part_lines(parts) >= 4):
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher; torchrun's ranks are in sessions of their own
        proc.wait()
    done_before = part_lines(parts)
    assert 4 <= done_before < 41 and not out.exists(), "killed too late to test a resume"
    time.sleep(3)  # the ranks died with their launcher: nothing more is written
    assert part_lines(parts) == done_before and not out.exists()
    # A kill in the middle of a write leaves a torn last line: the resume must skip it, not choke.
    finished = [json.loads(line) for p in parts.glob("run-*.jsonl") for line in p.read_text().splitlines()
                if line.endswith("}")]  # complete lines (the kill may have torn one)
    ok = sum(entry["result"]["error"] is None for entry in finished)  # the missing file is tried again
    last = sorted(parts.glob("run-*.jsonl"))[-1]
    with open(last, "ab") as f:
        f.write(b'{"index": 3, "result": {"path": "')

    paths = read_audio_list(listing)
    with pytest.raises(ShardError, match="pass --resume") as refused:  # a run without --resume
        run_transcription(sure_folder, paths, TranscribeOptions(precision="fp32", pack=False), output_file=out)
    assert str(parts) in str(refused.value)
    assert parts.is_dir() and not out.exists()  # refused before touching anything

    # --batch_size may change on a resume (it changes speed, not text); --no_pack may not.
    resumed = run(command(sure_folder, listing, out, "--resume", "--no_pack", procs=2), tmp_path)
    assert "transcribed 40 of 41 files" in resumed.stderr, resumed.stderr[-3000:]
    assert f"--resume: {ok} of 41 files already done; {41 - ok} to go" in resumed.stderr  # only the rest decoded
    results = results_of(out)
    assert [r["path"] for r in results] == paths  # each file once, in input order
    assert not parts.exists()

    whole = tmp_path / "whole.json"
    run_transcription(sure_folder, paths, TranscribeOptions(precision="fp32", pack=False),
                      output_file=whole, progress=False)
    assert results == results_of(whole)


@pytest.mark.slow  # not the real model, but 30 s of two processes on 2 cores
def test_one_dead_rank_ends_the_job(sure_folder, clips, tmp_path):
    """A rank killed (say by the OOM killer) must not leave the other waiting: the job ends, non-zero,
    and what was done is kept for --resume."""
    listing = audio_list(tmp_path, [*clips, *clips], extra=())
    out = tmp_path / "out.json"
    parts = parts_folder_for(out)
    proc = subprocess.Popen(command(sure_folder, listing, out, "--batch_size", "1", "--no_pack", procs=2),
                            cwd=tmp_path, env=dict(os.environ, **ENV), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (parts.is_dir() and any(parts.glob("run-000-rank-00001.jsonl"))
                   and part_lines(parts) >= 2):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.01)
        os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # ended, not hanging on its dead peer
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and not out.exists()
    assert parts.is_dir() and part_lines(parts) >= 2, err[-2000:]


def rank_pid(launcher: int, rank: int) -> int:
    """The pid of the worker torchrun started for `rank` (its RANK in the environment)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in children:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no worker with RANK={rank} among {children}")


@pytest.mark.slow  # two processes started by hand, as torchrun would: 20 s on 2 cores
def test_a_rank_that_fails_stops_the_job_with_its_message(sure_folder, clips, tmp_path):
    """Rank 1 cannot load its model (its own error, not a kill): rank 0 finishes its share, then
    stops too, saying which rank failed and why, instead of waiting for it forever."""
    listing = audio_list(tmp_path, clips[:4], extra=())
    out = tmp_path / "out.json"
    port = 29500 + os.getpid() % 1000
    procs = []
    for rank, model in enumerate([sure_folder, tmp_path / "no-such-model"]):
        env = dict(os.environ, **ENV, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(command(model, listing, out), cwd=tmp_path, env=env, text=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], errors
    assert "no-such-model" in errors[1]  # the failing rank says why
    assert "rank 1 failed: " in errors[0] and "no-such-model" in errors[0] and "--resume" in errors[0], errors[0]
    assert not out.exists() and part_lines(parts_folder_for(out)) >= 1  # rank 0's files are kept


# ---- single process ---------------------------------------------------------------------------

def test_resume_without_torchrun(sure_folder, clips, tmp_path):
    """--resume in one process keeps parts too; a rerun skips what they hold, decodes the rest."""
    paths = [str(p) for p in clips[:6]]
    out = tmp_path / "out.txt"
    options = TranscribeOptions(precision="fp32")
    folder = PartsFolder(parts_folder_for(out))
    # What a killed run leaves: the header and the first three files.
    header = run_header(sure_folder, paths, options)
    assert folder.open(header, resume=True) == 0
    first = [FileResult(path=p, text="earlier", segments=[Segment(0.0, 1.0, "earlier")], language="en",
                        duration=1.0) for p in paths[:3]]
    with open(folder.part_file(0, 0), "w", encoding="utf-8") as f:
        for i, r in enumerate(first):
            f.write(json.dumps({"index": i, "result": r.to_dict()}) + "\n")

    with pytest.raises(ShardError, match="pass --resume"):  # without --resume: refused, not overwritten
        run_transcription(sure_folder, paths, options, output_file=out, progress=False)
    summary = run_transcription(sure_folder, paths, options, output_file=out, resume=True, progress=False)
    assert [r.text for r in summary.results] == ["earlier"] * 3 + ["hello"] * 3  # only the rest decoded
    lines = out.read_text().splitlines()
    assert lines[0::2] == [f"### {p}" for p in paths] and lines[1::2] == ["earlier"] * 3 + ["hello"] * 3
    assert not folder.path.exists()


def test_resume_needs_an_output_file(sure_folder, clips):
    with pytest.raises(OptionsError, match="--resume needs --output_file"):
        run_transcription(sure_folder, [str(clips[0])], resume=True, progress=False)


# ---- the split ---------------------------------------------------------------------------------

def test_split_balances_durations_and_covers_every_file():
    seconds = [30.0, 1.0, 2.0, 29.0, 3.0, 4.0, 5.0, 28.0, 6.0, 7.0, 1.5, 2.5]
    indices = list(range(100, 112))
    shares = split_by_duration(indices, seconds, 3)
    assert sorted(i for s in shares for i in s) == indices  # every file once
    assert all(s == sorted(s) for s in shares)  # each share in input order
    totals = [sum(seconds[i - 100] for i in s) for s in shares]
    assert max(totals) - min(totals) <= 7.0  # not 3 long files on one rank
    assert all(sum(seconds[i - 100] > 20 for i in s) == 1 for s in shares)  # one long file each
    assert split_by_duration(indices, seconds, 3) == shares  # the same on every rank, every time


def test_split_spreads_files_of_unknown_length_and_small_lists():
    shares = split_by_duration([0, 1, 2, 3], [None, None, None, None], 2)
    assert sorted(map(len, shares)) == [2, 2]
    assert split_by_duration([7], [3.0], 4) == [[7], [], [], []]
    assert split_by_duration([], [], 2) == [[], []]


# ---- the parts folder --------------------------------------------------------------------------

def result_line(index: int, path: str, **kw) -> str:
    result = FileResult(path=path, text="t", segments=[Segment(0.0, 1.0, "t")], language="en", duration=1.0, **kw)
    return json.dumps({"index": index, "result": result.to_dict()}) + "\n"


def test_done_skips_a_torn_last_line_and_retries_errors(tmp_path):
    paths = ["a.wav", "b.wav", "c.wav", "d.wav"]
    folder = PartsFolder(tmp_path / "out.json.parts")
    folder.open(run_header("m", paths, TranscribeOptions()), resume=True)
    folder.part_file(0, 0).write_text(result_line(0, "a.wav") + result_line(2, "c.wav", error="unreadable")
                                      + '{"index": 1, "result": {"pa')
    folder.part_file(0, 1).write_text(result_line(3, "d.wav"))
    done = folder.done(paths)
    assert sorted(done) == [0, 3]  # 1 was torn, 2 failed and is tried again
    assert done[0].path == "a.wav" and done[0].segments == [Segment(0.0, 1.0, "t")]


def test_done_refuses_a_bad_line_inside_a_part_and_foreign_paths(tmp_path):
    paths = ["a.wav", "b.wav"]
    folder = PartsFolder(tmp_path / "out.json.parts")
    folder.open(run_header("m", paths, TranscribeOptions()), resume=True)
    folder.part_file(0, 0).write_text('{"index": 0, "res\n' + result_line(1, "b.wav"))
    with pytest.raises(ShardError, match=r"run-000-rank-00000.jsonl, line 1: not a result line"):
        folder.done(paths)
    folder.part_file(0, 0).write_text(result_line(1, "z.wav"))
    with pytest.raises(ShardError, match="'z.wav' is not in this file list"):
        folder.done(paths)


def test_each_run_gets_its_own_part_files(tmp_path):
    header = run_header("m", ["a.wav"], TranscribeOptions())
    folder = PartsFolder(tmp_path / "out.json.parts")
    assert folder.open(header, resume=True) == 0
    folder.part_file(0, 1).write_text("")
    assert folder.open(header, resume=True) == 1  # a later run never appends to a torn file


@pytest.mark.parametrize("change, message", [
    (dict(paths=["a.wav", "c.wav"]), "different file list"),
    (dict(paths=["a.wav"]), r"different file list \(2 files then, 1 now"),
    (dict(model="other"), "made with model m, not other"),
    (dict(options=TranscribeOptions(beam_size=5)), "beam_size: 1 then, 5 now"),
    (dict(options=TranscribeOptions(language="en", task="transcribe", return_timestamps=True)), "return_timestamps"),
])
def test_a_mismatched_header_is_refused(tmp_path, change, message):
    base = dict(paths=["a.wav", "b.wav"], model="m", options=TranscribeOptions())
    folder = PartsFolder(tmp_path / "out.json.parts")
    folder.open(run_header(base["model"], base["paths"], base["options"]), resume=True)
    new = {**base, **change}
    with pytest.raises(ShardError, match=message) as info:
        folder.open(run_header(new["model"], new["paths"], new["options"]), resume=True)
    assert str(folder.path) in str(info.value)  # says which folder to delete to start over


def test_speed_options_may_change_on_resume(tmp_path):
    folder = PartsFolder(tmp_path / "out.json.parts")
    folder.open(run_header("m", ["a.wav"], TranscribeOptions(batch_size=16)), resume=True)
    assert folder.open(run_header("m", ["a.wav"], TranscribeOptions(batch_size=2, device="cpu")), resume=True) == 0


def test_leftovers_without_a_header_or_without_resume_are_refused(tmp_path):
    folder = PartsFolder(tmp_path / "out.json.parts")
    header = run_header("m", ["a.wav"], TranscribeOptions())
    folder.path.mkdir()
    folder.part_file(0, 0).write_text(result_line(0, "a.wav"))
    with pytest.raises(ShardError, match="part files without header.json"):
        folder.open(header, resume=True)
    with pytest.raises(ShardError, match="pass --resume"):
        folder.open(header, resume=False)
    assert folder.part_file(0, 0).read_text() == result_line(0, "a.wav")  # nothing removed


def test_results_read_back_as_written():
    result = FileResult(path="a.wav", text="hi there", language="en", language_probability=0.91, duration=2.5,
                        segments=[Segment(0.0, 1.2, "hi there", (Word(0.0, 0.5, " hi", 0.9),
                                                                 Word(0.5, 1.2, " there", 0.8)))])
    assert FileResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    failed = FileResult(path="b.wav", error="audio file not found")
    assert FileResult.from_dict(failed.to_dict()) == failed


# ---- the launch --------------------------------------------------------------------------------

def test_launch_is_read_from_torchrun_variables():
    assert launch_from_env({}) == Launch(0, 1, 0)
    assert launch_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Launch(3, 4, 1)
    assert launch_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}).distributed
    with pytest.raises(OptionsError, match="RANK must be in"):
        launch_from_env({"WORLD_SIZE": "2", "RANK": "2"})
