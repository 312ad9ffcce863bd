"""Subtitle reading (subtitles.py): SRT and WebVTT as found in the wild, table-driven."""

from __future__ import annotations

import pytest

from whisper_lora.errors import ManifestError
from whisper_lora.data.subtitles import clean_text, format_time, parse_subtitles, read_subtitles

SRT = """\ufeff1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>,
general Kenobi.

2
00:00:03,250 --> 00:00:04,000 X1:100
{\\an8}&amp; then

7
00:00:05,000 -> 00:00:06,000
broken arrow

8
1:02:03.4 --> 1:02:04.56
hours and short fractions
"""

VTT = """WEBVTT - a title

NOTE a comment
that spans lines

intro
00:01.000 --> 00:02.000 align:start position:10%
<v Roger>Hi <c.yellow>you</c>

00:00:03.000 --> 00:00:04.500
<00:00:03.500>karaoke words
"""


def test_srt_cues_numbers_times_and_plain_text():
    cues, problems = parse_subtitles(SRT.replace("\n", "\r\n"))  # Windows line ends too
    assert [(c.number, c.start, c.end, c.text) for c in cues] == [
        (1, 1.0, 2.5, "Hello there, general Kenobi."),
        (2, 3.25, 4.0, "& then"),
        (8, 3723.4, 3724.56, "hours and short fractions"),
    ]
    assert len(problems) == 1 and problems[0].line == 11 and "-> 00:00:06,000' is not a time line" in problems[0].reason


def test_vtt_header_notes_identifiers_settings_and_voice_tags():
    cues, problems = parse_subtitles(VTT)
    assert not problems
    assert [(c.number, c.start, c.end, c.text) for c in cues] == [
        (1, 1.0, 2.0, "Hi you"), (2, 3.0, 4.5, "karaoke words")]


@pytest.mark.parametrize("line, text", [
    ("<font color=\"#fff\">Red</font> alert", "Red alert"),
    ("{\\i1}slanted{\\i0}", "slanted"),
    ("<i></i>", ""),
    ("Tom &lt;3 Jerry", "Tom <3 Jerry"),
])
def test_markup_is_removed(line, text):
    assert clean_text(line) == text


def test_format_time_is_srt_style():
    assert format_time(3723.4) == "01:02:03,400" and format_time(0.0015) == "00:00:00,002"


def test_unreadable_files_say_what_to_do(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_subtitles(tmp_path / "none.srt")
    latin = tmp_path / "latin.srt"
    latin.write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n".encode("cp1252"))
    with pytest.raises(ManifestError, match="not UTF-8.*iconv"):
        read_subtitles(latin)
    empty = tmp_path / "empty.srt"
    empty.write_text("just some text\n")
    with pytest.raises(ManifestError, match="holds no cues"):
        read_subtitles(empty)
