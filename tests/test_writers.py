"""Output writers: every format parses back; subtitles follow the SRT / WebVTT grammar."""

from __future__ import annotations

import csv
import json
import re

import pytest

from whisper_lora.errors import OptionsError
from whisper_lora.decoding.results import FileResult, Segment, join_segments, split_timestamped
from whisper_lora.decoding.writers import format_for, format_timestamp, open_writer

RESULTS = [
    FileResult(path="a.wav", text="Hello there. General Kenobi.", duration=4.2, language="en",
               segments=[Segment(0.0, 1.5, "Hello there."), Segment(1.5, 4.2, "General Kenobi.")]),
    FileResult(path="missing.wav", error="audio file not found: missing.wav"),
    FileResult(path="sub/b.wav", text="a < b & c --> d", duration=3725.5, language="zh", language_probability=0.91,
               segments=[Segment(3723.0, 3725.5, "a < b & c --> d")]),
]


@pytest.mark.parametrize("seconds, marker, hours, expected", [
    (0.0, ".", False, "00:00.000"),
    (1.5, ".", False, "00:01.500"),
    (61.2345, ".", False, "01:01.234"),  # 61.2345 s is stored just below .2345: rounds down
    (3725.5, ".", False, "01:02:05.500"),
    (1.5, ",", True, "00:00:01,500"),
    (-0.2, ".", False, "00:00.000"),
])
def test_format_timestamp(seconds, marker, hours, expected):
    assert format_timestamp(seconds, marker, always_hours=hours) == expected


def test_format_from_extension_or_flag(tmp_path):
    assert format_for(tmp_path / "r.JSON") == "json"
    assert format_for(tmp_path / "r.out", "srt") == "srt"
    with pytest.raises(OptionsError, match="--output_format"):
        format_for(tmp_path / "r.out")


def write_all(path, results=RESULTS, **kw):
    with open_writer(path, len(results), **kw) as writer:
        for r in results:
            writer.add(r)
    return path


def test_json_holds_every_result_and_the_model(tmp_path):
    doc = json.loads(write_all(tmp_path / "r.json", meta={"model": "bundled:tiny.en", "task": "transcribe"})
                     .read_text(encoding="utf-8"))
    assert doc["model"] == "bundled:tiny.en"
    assert [r["path"] for r in doc["results"]] == ["a.wav", "missing.wav", "sub/b.wav"]
    a, missing, b = doc["results"]
    assert a["segments"] == [{"start": 0.0, "end": 1.5, "text": "Hello there."},
                             {"start": 1.5, "end": 4.2, "text": "General Kenobi."}]
    assert a["error"] is None and "language_probability" not in a  # given, not detected
    assert missing["error"].startswith("audio file not found") and missing["segments"] == []
    assert b["language"] == "zh" and b["language_probability"] == 0.91


def test_json_is_on_disk_after_the_first_result(tmp_path):
    path = tmp_path / "r.json"
    writer = open_writer(path, 3)
    writer.add(RESULTS[0])  # an interrupted run keeps what was done
    assert [r["path"] for r in json.loads(path.read_text())["results"]] == ["a.wav"]
    writer.close()


def test_txt_single_and_several(tmp_path):
    assert write_all(tmp_path / "one.txt", RESULTS[:1]).read_text() == "Hello there. General Kenobi.\n"
    text = write_all(tmp_path / "all.txt").read_text()
    assert text.splitlines() == ["### a.wav", "Hello there. General Kenobi.", "### missing.wav",
                                 "ERROR: audio file not found: missing.wav", "### sub/b.wav", "a < b & c --> d"]


def test_tsv_parses_as_a_table(tmp_path):
    with open(write_all(tmp_path / "r.tsv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(r["path"], float(r["start"]), float(r["end"])) for r in rows] == [
        ("a.wav", 0.0, 1.5), ("a.wav", 1.5, 4.2), ("sub/b.wav", 3723.0, 3725.5)]


SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
VTT_TIME = r"(\d\d):(\d\d):(\d\d)\.(\d\d\d)"


def parse_cues(text: str, time_re: str, numbered: bool):
    """A strict reader: blocks separated by one blank line; [index line]; 'start --> end'; text lines."""
    cues = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if numbered:
            assert lines.pop(0) == str(len(cues) + 1)
        m = re.fullmatch(f"{time_re} --> {time_re}", lines[0])
        assert m, lines[0]
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        assert 0 <= start < end and len(lines) >= 2 and all(lines[1:])
        cues.append((start, end, "\n".join(lines[1:])))
    return cues


def test_srt_single_file(tmp_path):
    cues = parse_cues(write_all(tmp_path / "a.srt", RESULTS[:1]).read_text(), SRT_TIME, numbered=True)
    assert cues == [(0.0, 1.5, "Hello there."), (1.5, 4.2, "General Kenobi.")]


def test_vtt_escapes_and_parses(tmp_path):
    text = write_all(tmp_path / "b.vtt", RESULTS[2:]).read_text()
    assert text.startswith("WEBVTT\n\n")
    cues = parse_cues(text[len("WEBVTT\n\n"):], VTT_TIME, numbered=False)
    assert cues == [(3723.0, 3725.5, "a &lt; b &amp; c -> d")]


def test_subtitles_for_several_inputs_go_to_a_folder(tmp_path):
    twin = FileResult(path="other/a.wav", text="x", duration=1.0, segments=[Segment(0.0, 1.0, "x")])
    write_all(tmp_path / "subs.srt", RESULTS + [twin])
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["a-2.srt", "a.srt", "b.srt"]
    assert not (tmp_path / "subs.srt").exists()


def test_zero_length_segment_still_makes_a_valid_cue(tmp_path):
    r = FileResult(path="z.wav", text="hi", duration=1.0, segments=[Segment(0.5, 0.5, "hi")])
    cues = parse_cues(write_all(tmp_path / "z.srt", [r]).read_text(), SRT_TIME, numbered=True)
    assert cues[0][0] == 0.5 and cues[0][1] > 0.5


def test_join_segments_spaces_only_between_spaced_scripts():
    assert join_segments([Segment(0, 1, "Hello."), Segment(1, 2, "World.")]) == "Hello. World."
    assert join_segments([Segment(0, 1, "你好。"), Segment(1, 2, "世界")]) == "你好。世界"
    assert join_segments([Segment(0, 1, "OK"), Segment(1, 2, "好")]) == "OK 好"


def test_split_timestamped_tokens():
    # ids: text < 100 <= specials < 200 <= timestamps (0.02 s each)
    def decode(ids):
        return " " + " ".join(f"w{i}" for i in ids)

    tokens = [200, 1, 2, 250, 250, 3, 300, 100]
    assert split_timestamped(tokens, 200, 100, decode, duration=10.0) == [
        Segment(0.0, 1.0, "w1 w2"), Segment(1.0, 2.0, "w3")]
    # an unclosed last segment ends at the duration; times past the end are clamped
    assert split_timestamped([200, 1, 250, 250, 2], 200, 100, decode, duration=0.5) == [
        Segment(0.0, 0.5, "w1"), Segment(0.5, 0.5, "w2")]
    assert split_timestamped([1, 2], 200, 100, decode, duration=3.0) == [Segment(0.0, 3.0, "w1 w2")]
