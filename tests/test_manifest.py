"""manifest.py and `whisper-lora validate`: both formats, relative paths, and every bad case
reported at once with its row number."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import whisper_lora
from whisper_lora.cli import main
from whisper_lora.errors import ManifestError
from whisper_lora.data.manifest import Row, read_manifest
from whisper_lora.data.validation import checked_rows, format_report, validate_manifest

ONE, TWO = "The weather is very nice today.", "I would like a cup of coffee."


@pytest.fixture
def data(say, tmp_path):
    """A dataset folder: audio/one.wav and audio/two.wav (espeak-ng speech), the manifest goes in it."""
    (tmp_path / "audio").mkdir()
    shutil.copy(say(ONE), tmp_path / "audio" / "one.wav")
    shutil.copy(say(TWO), tmp_path / "audio" / "two.wav")
    return tmp_path


def seconds(path):
    return soundfile.info(path).duration


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------------

def test_json_list_as_in_the_original_readme(data, tmp_path, monkeypatch):
    manifest = write_json(data / "train.json", [
        {"audio_path": "./audio/one.wav", "text": f"  {ONE} "},
        {"audio_path": str(data / "audio" / "two.wav"), "text": TWO, "language": "en"},
    ])
    monkeypatch.chdir(tmp_path.parent)  # relative paths follow the manifest, not the working folder

    rows = read_manifest(manifest)

    assert rows == [
        Row(1, str(data / "audio" / "one.wav"), ONE),
        Row(2, str(data / "audio" / "two.wav"), TWO, language="en"),
    ]


def test_json_lines_rows_are_numbered_by_line(data):
    manifest = write_lines(data / "train.jsonl", [
        json.dumps({"audio_path": "audio/one.wav", "text": ONE}),
        "",
        json.dumps({"audio_path": "audio/two.wav", "text": TWO, "segments": [
            {"start": 0, "end": 1.5, "text": "I would like"}, {"start": 1.5, "end": 2, "text": "coffee"}]}),
    ])
    rows = read_manifest(manifest)
    assert [r.number for r in rows] == [1, 3]
    assert rows[1].segments == [{"start": 0.0, "end": 1.5, "text": "I would like"},
                                {"start": 1.5, "end": 2.0, "text": "coffee"}]


def test_json_extension_with_one_object_per_line_is_read_as_json_lines(data):
    manifest = write_lines(data / "train.json", [json.dumps({"audio_path": "audio/one.wav", "text": ONE})])
    assert [r.text for r in read_manifest(manifest)] == [ONE]


def test_byte_order_mark_is_accepted(data):
    manifest = data / "bom.json"
    manifest.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"audio_path": "audio/one.wav", "text": ONE}]).encode())
    assert len(read_manifest(manifest)) == 1


@pytest.mark.parametrize("given, code", [("en", "en"), ("English", "en"), ("<|zh|>", "zh"),
                                         ("mandarin", "zh"), ("JA", "ja")])
def test_language_codes_and_names_become_whisper_codes(data, given, code):
    manifest = write_json(data / "m.json", [{"audio_path": "audio/one.wav", "text": ONE, "language": given}])
    assert read_manifest(manifest)[0].language == code


def test_read_manifest_lists_every_bad_row(data):
    manifest = write_json(data / "m.json", [
        {"audio_path": "audio/one.wav"}, {"audio_path": "audio/two.wav", "text": TWO}, "audio/two.wav"])
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert str(manifest) in message
    assert "row 1 (audio/one.wav): missing key 'text'" in message
    assert "row 3: row is a string" in message
    assert "row 2" not in message


# --- whole-file problems: (file name, bytes, words in the message) ---------------------------------

FILE_PROBLEMS = [
    ("absent.json", None, "manifest not found"),
    ("gbk.json", json.dumps([{"audio_path": "a.wav", "text": "你好"}], ensure_ascii=False).encode("gbk"),
     "not UTF-8 text: byte 0xc4 on line 1"),
    ("broken.json", b'[\n  {"audio_path": "a.wav", "text": "x"}\n  {"audio_path": "b.wav"}\n]',
     "not valid JSON: Expecting ',' delimiter at line 3, column 3"),
    ("object.json", b'{\n  "audio_path": "a.wav",\n  "text": "x"\n}', "holds a JSON object; it must be a JSON list"),
    ("number.json", b"42", "holds a number"),
    ("table.csv", b"audio_path,text\na.wav,hello\n", "not valid JSON: Expecting value at line 1, column 1"),
    ("table.jsonl", b"audio_path,text\na.wav,hello\n", "not JSON Lines: line 1"),
    ("blank.json", b"  \n", "is empty"),
    ("nothing.json", b"[]", "has no rows"),
]


@pytest.mark.parametrize("name, content, words", FILE_PROBLEMS, ids=[f[0] for f in FILE_PROBLEMS])
def test_file_level_problems(tmp_path, capsys, name, content, words):
    manifest = tmp_path / name
    if content is not None:
        manifest.write_bytes(content)

    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value) and words in str(info.value)

    report = validate_manifest(manifest)
    assert not report.ok and report.file_error == str(info.value)
    assert main(["validate", str(manifest)]) == 1
    assert words in capsys.readouterr().out


# --- every row problem at once --------------------------------------------------------------------

def _row_cases(data):
    """(manifest entry, words of the expected error or None for a good row) in file order."""
    (data / "audio" / "empty.wav").write_bytes(b"")
    (data / "audio" / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    soundfile.write(data / "audio" / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    flac = data / "audio" / "damaged.flac"
    samples, rate = soundfile.read(data / "audio" / "one.wav", dtype="float32")
    soundfile.write(flac, samples, rate)
    damaged = bytearray(flac.read_bytes())
    damaged[2000:6000] = np.random.default_rng(1).bytes(4000)
    flac.write_bytes(bytes(damaged))
    return [
        ({"audio_path": "audio/one.wav", "text": ONE}, None),
        ({"audio_path": "audio/missing.wav", "text": "x"}, "audio file not found (relative paths resolve"),
        ({"audio_path": "audio/empty.wav", "text": "x"}, "audio file is empty (0 bytes)"),
        ({"audio_path": "audio/noise.wav", "text": "x"}, "cannot decode audio file"),
        ({"audio_path": "audio/damaged.flac", "text": "x"}, "damaged audio data"),
        ({"audio_path": "audio/two.wav", "text": "  "}, "text is empty"),
        ({"audio_path": "audio/two.wav", "text": None}, "text must be a string, got null"),
        ({"audio_path": "audio/long.wav", "text": "x"}, "audio is 31.0 s long; Whisper takes at most 30 s"),
        ({"text": "x"}, "missing key 'audio_path'"),
        ({"audio_path": "audio/two.wav"}, "missing key 'text'"),
        ({"audio_filepath": "audio/two.wav", "text": "x"}, "found 'audio_filepath': rename it to 'audio_path'"),
        ({"audio_path": "", "text": "x"}, "audio_path must be a non-empty string"),
        (["audio/two.wav", "x"], "row is a JSON list, not an object"),
        ({"audio_path": "./audio/../audio/one.wav", "text": ONE}, None),  # a repeat: oversampling, a warning
        ({"audio_path": "audio/one.wav", "text": "other"}, "same audio as row 1 but a different text"),
        ({"audio_path": "audio/two.wav", "text": TWO, "language": "zh-CN"}, "unknown language 'zh-CN' (use 'zh')"),
        ({"audio_path": "audio/two.wav", "text": TWO, "segments": [{"start": 0, "end": 99, "text": "x"}]},
         "a segment ends at 99 s, after the audio's end"),
        ({"audio_path": "audio/two.wav", "text": TWO, "segments": [{"start": 2, "end": 1, "text": "x"}]},
         "segment 1 has start 2 s and end 1 s"),
        ({"audio_path": "audio/two.wav", "text": TWO}, None),
    ]


def test_validate_lists_every_bad_row_with_its_number(data):
    cases = _row_cases(data)
    manifest = write_json(data / "bad.json", [entry for entry, _ in cases])

    report = validate_manifest(manifest)

    expected = {number: words for number, (_, words) in enumerate(cases, start=1) if words}
    assert {p.number for p in report.errors} == set(expected)
    for problem in report.errors:
        assert expected[problem.number] in problem.reason, problem
    repeat = next(n for n, (entry, _) in enumerate(cases, start=1)
                  if isinstance(entry, dict) and entry.get("audio_path", "").startswith("./audio/../"))
    assert [r.number for r in report.good_rows] == [1, repeat, len(cases)]
    assert any("1 rows repeat an earlier row's audio and text" in p.reason and p.warning for p in report.problems)
    assert report.rows == len(cases) and not report.ok
    # every problem printed with its row number, then the summary
    text = format_report(report)
    for number in expected:
        assert f"\n  row {number} " in text or f"\n  row {number}:" in text
    assert f"{len(cases)} rows, 3 valid, {len(expected)} with errors" in text.splitlines()[-1]


def test_validate_json_lines_reports_unparsable_lines_and_key_warnings(data):
    manifest = write_lines(data / "bad.jsonl", [
        json.dumps({"audio_path": "audio/one.wav", "text": ONE}),
        '{"audio_path": "audio/two.wav", "text": "unterminated}',
        "",
        json.dumps({"audio_path": "audio/two.wav", "text": TWO, "langauge": "en", "speaker": "a"}),
    ])
    report = validate_manifest(manifest)
    assert [(p.number, p.warning) for p in report.problems] == [(2, False), (4, True), (4, True)]
    assert "line is not valid JSON" in report.problems[0].reason
    assert "unknown key 'langauge' is ignored (did you mean 'language'?)" == report.problems[1].reason
    assert [r.number for r in report.good_rows] == [1, 4]  # a warning keeps the row


def test_summary_counts_hours_and_duration_spread(data):
    manifest = write_json(data / "m.json", [{"audio_path": "audio/one.wav", "text": ONE},
                                            {"audio_path": "audio/two.wav", "text": TWO}])
    report = validate_manifest(manifest)
    lengths = sorted([seconds(data / "audio" / "one.wav"), seconds(data / "audio" / "two.wav")])
    assert report.ok and report.problems == []
    assert sorted(report.durations) == pytest.approx(lengths, abs=1e-6)
    summary = format_report(report).splitlines()[-1]
    assert summary == (f"2 rows, 2 valid, 0 with errors, 0 warnings; {sum(lengths) / 3600:.2f} hours "
                       f"({sum(lengths):.1f} s) of valid audio; duration min {lengths[0]:.1f} s, "
                       f"median {sum(lengths) / 2:.1f} s, max {lengths[1]:.1f} s")


def test_max_seconds_is_the_length_limit(data):
    manifest = write_json(data / "m.json", [{"audio_path": "audio/one.wav", "text": ONE}])
    assert validate_manifest(manifest).ok
    report = validate_manifest(manifest, max_seconds=1.0)
    assert [p.number for p in report.errors] == [1] and "at most 1 s" in report.errors[0].reason


def test_quick_mode_reads_headers_only(data):
    _row_cases(data)  # writes the broken audio files, the damaged FLAC among them
    manifest = write_json(data / "m.json", [{"audio_path": "audio/damaged.flac", "text": "x"},
                                            {"audio_path": "audio/noise.wav", "text": "x"}])
    quick = validate_manifest(manifest, decode=False)
    assert [p.number for p in quick.errors] == [2]  # damaged data behind a good header goes unseen
    assert [p.number for p in validate_manifest(manifest).errors] == [1, 2]


# --- what training uses ---------------------------------------------------------------------------

def test_checked_rows_drops_bad_rows_and_logs_them(data, caplog):
    manifest = write_json(data / "m.json", [{"audio_path": "audio/one.wav", "text": ONE},
                                            {"audio_path": "audio/missing.wav", "text": "x"}])
    with caplog.at_level(logging.WARNING, logger="whisper_lora.data.validation"):
        rows = checked_rows(manifest)
    assert [r.number for r in rows] == [1] and rows[0].duration > 1
    assert "row 2 (audio/missing.wav): audio file not found" in caplog.text
    assert "dropped the 1 rows with errors" in caplog.text

    with pytest.raises(ManifestError, match="strict mode") as info:
        checked_rows(manifest, strict=True)
    assert "row 2 (audio/missing.wav)" in str(info.value)


def test_checked_rows_fails_when_no_row_is_usable(data):
    manifest = write_json(data / "m.json", [{"audio_path": "audio/missing.wav", "text": "x"}])
    with pytest.raises(ManifestError, match="no usable rows"):
        checked_rows(manifest)


# --- the command ---------------------------------------------------------------------------------

def test_validate_command_exit_status(data, capsys):
    good = write_json(data / "good.json", [{"audio_path": "audio/one.wav", "text": ONE}])
    bad = write_json(data / "bad.json", [{"audio_path": "audio/one.wav", "text": ""}])

    assert main(["validate", str(good)]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "row 1 (audio/one.wav): text is empty" in out and str(good) in out
    assert main(["validate", "--max_seconds", "1", str(good)]) == 1


def test_validate_command_in_a_real_process(data):
    bad = write_json(data / "bad.json", [{"audio_path": "audio/none.wav", "text": "x"}])
    env = dict(os.environ, PYTHONPATH=str(Path(whisper_lora.__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-m", "whisper_lora", "validate", str(bad)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "row 1 (audio/none.wav): audio file not found" in proc.stdout
