"""Atomic writes and folder swaps: a reader sees the old or the new, a failure leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from whisper_lora.fileio import atomic_path, build_once, replace_folder, write_json, write_text


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_text(tmp_path / "x" / "out.txt", "one")
    write_text(tmp_path / "x" / "out.txt", "two")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["out.txt"]
    assert (tmp_path / "x" / "out.txt").read_text() == "two"


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = write_json(tmp_path / "m.json", {"a": "ü"})
    with pytest.raises(TypeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".json" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise TypeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "ü"} and "ü" in target.read_text(encoding="utf-8")


def test_replace_folder_swaps_whole_folders(tmp_path):
    new, old = tmp_path / "new", tmp_path / "out"
    new.mkdir()
    (new / "a").write_text("new")
    old.mkdir()
    (old / "b").write_text("old")
    replace_folder(new, old)
    assert [p.name for p in old.iterdir()] == ["a"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_build_once_builds_one_time_and_cleans_up_a_failure(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "done").write_text("x")

    target = tmp_path / "cache" / "thing"
    assert build_once(target, build, "done") == target and build_once(target, build, "done") == target
    assert len(calls) == 1 and (target / "done").is_file()

    def broken(folder):
        (folder / "part").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        build_once(tmp_path / "cache" / "other", broken, "done")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["thing"]
