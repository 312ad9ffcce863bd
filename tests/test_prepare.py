"""`whisper-lora prepare` (prepare.py, cue_clips.py): recordings + subtitles cut into clips with
segment times, folders of pairs, Common Voice / CSV / TSV tables; the output checked and atomic.

The long recording is built here from espeak-ng sentences placed at known times, so every cue's
time is that of real speech and the clips can be compared sample for sample with the recording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from whisper_lora import audio
from whisper_lora.cli import main
from whisper_lora.errors import ManifestError, OptionsError
from whisper_lora.data.prepare import PrepareOptions, prepare
from whisper_lora.data.subtitles import format_time
from whisper_lora.data.validation import validate_manifest

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "Please call me back when you get home tonight.",
    "The weather is very nice today.", "I would like a cup of coffee.",
    "We will meet at the station at nine o'clock.", "She opened the window to let in some fresh air.",
    "The train to the city leaves every hour.", "My brother plays the guitar in a small band.",
    "Turn left at the second traffic light.", "The museum is closed on Mondays.",
    "He forgot his umbrella at the office.", "Our garden is full of red and yellow flowers.",
    "The children are playing in the park.", "Could you pass me the salt, please?",
]
FIRST_START = 1.0  # seconds of silence before the first sentence
PAUSE = 0.6  # between sentences


def _speech(path: Path) -> np.ndarray:
    samples = audio.load_audio(path)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0]: loud[-1] + 1]


@pytest.fixture(scope="module")
def recording(say, tmp_path_factory):
    """(talk.wav, its samples, [(start, end, text)]): sentences at known times, one of them lying
    across the 30-s mark counted from the first sentence, where a naive 30-s cut would fall."""
    folder = tmp_path_factory.mktemp("recording")
    rate, limit = audio.SAMPLE_RATE, FIRST_START + 30.0
    pieces, times, position = [np.zeros(int(FIRST_START * rate), np.float32)], [], FIRST_START
    crossed = False
    for text in SENTENCES:
        speech = _speech(say(text))
        length = len(speech) / rate
        start = position
        if not crossed and start + length > limit - 1.0:
            # This one crosses the mark: it starts before it and ends after it.
            start, crossed = max(position, limit - length + 0.5), True
            assert start < limit < start + length
        pieces += [np.zeros(int(round((start - position) * rate)), np.float32), speech]
        start = sum(len(p) for p in pieces[:-1]) / rate  # exact, in samples
        times.append((start, start + length, text))
        pieces.append(np.zeros(int(PAUSE * rate), np.float32))
        position = sum(len(p) for p in pieces) / rate
    assert crossed and position > 40
    samples = np.concatenate(pieces)
    path = folder / "talk.wav"
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path, samples, times


def _srt(cues: list[tuple[float, float, str]]) -> str:
    return "".join(f"{n}\n{format_time(s)} --> {format_time(e)}\n{t}\n\n" for n, (s, e, t) in enumerate(cues, 1))


def test_a_recording_with_subtitles_becomes_clips_with_segment_times(recording, tmp_path):
    path, samples, times = recording
    duration = len(samples) / audio.SAMPLE_RATE
    cues = [list(t) for t in times]
    cues[2][0] = cues[1][1] - 0.2  # cue 3 starts 0.2 s before cue 2 ends: timing slop
    cues.insert(4, [cues[3][1] + 0.1, cues[3][1] + 0.4, "<i></i>"])  # cue 5: no words
    cues[-1][1] = duration + 2.0  # the last sentence's cue runs past the audio's end
    cues.append([duration + 5.0, duration + 7.0, "Subtitles by nobody."])  # starts after it
    srt = path.with_suffix(".srt")
    srt.write_text(_srt([tuple(c) for c in cues]), encoding="utf-8")
    crossing = next(n for n, (s, e, _) in enumerate(cues, 1) if s < FIRST_START + 30 < e)
    out = tmp_path / "prepared"

    result = prepare(PrepareOptions(inputs=(str(path),), output_dir=str(out)))

    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert result.rows == len(rows) == result.clips >= 2
    report = validate_manifest(out / "manifest.jsonl")
    assert report.ok and len(report.good_rows) == len(rows), report.problems
    # Every spoken sentence is in exactly one clip, whole, in order, with its time in the clip.
    spoken = [t for s in (r["segments"] for r in rows) for t in s]
    assert [s["text"] for s in spoken] == [t for _, _, t in times]
    at = 0
    for row in rows:
        clip = audio.load_audio(out / row["audio_path"])
        assert len(clip) <= audio.N_SAMPLES
        assert row["text"] == " ".join(s["text"] for s in row["segments"])
        # The clip is the recording's audio from some offset: find it from its first segment.
        first = times[at]
        offset = first[0] - row["segments"][0]["start"] if at != 2 else None
        for seg in row["segments"]:
            start, end, _ = times[at]
            if at == 2:  # cue 3: the overlap's boundary moved to its middle, 0.1 s before cue 2's end
                assert seg["start"] == pytest.approx(times[1][1] - 0.1 - offset, abs=0.002)
            else:
                assert seg["start"] == pytest.approx(start - offset, abs=0.002)
            if at == 1:
                assert seg["end"] == pytest.approx(times[1][1] - 0.1 - offset, abs=0.002)
            elif at == len(times) - 1:
                assert seg["end"] == pytest.approx(duration - offset, abs=0.002)  # cut at the audio's end
            else:
                assert seg["end"] == pytest.approx(end - offset, abs=0.002)
            at += 1
        # Segment times are rounded to 1 ms (16 samples): the clip is the recording's audio there.
        k = round(offset * audio.SAMPLE_RATE)
        padded = np.concatenate([samples, np.zeros(32, np.float32)])
        error = min(np.abs(clip - padded[j:j + len(clip)]).max() for j in range(max(k - 16, 0), k + 17))
        assert error < 1e-3  # PCM_16 rounding
        # No clip starts or ends inside another sentence's speech.
        for start, end, _ in times:
            assert not start < offset < end - 0.01 and not start + 0.01 < offset + len(clip) / 16000 < end
    assert rows[1]["segments"][0]["text"] == cues[crossing - 1][2]  # the crossing cue opens clip 2

    notes = "\n".join(result.notes)
    assert notes == (out / "report.txt").read_text().strip()

    def cue(n):
        s, e, _ = cues[n - 1]
        return f"talk.srt: cue {n} ({format_time(s)} --> {format_time(e)}): "

    assert cue(3) + "overlaps cue 2 by 0.20 s" in notes
    assert cue(5) + "has no words: skipped" in notes
    assert cue(crossing) + "would cross the 30-s limit of clip 1" in notes
    assert cue(len(cues) - 1) + "ends after the audio ends" in notes
    assert cue(len(cues)) + "starts after the audio ends" in notes
    assert len(result.notes) == 5

    # Nothing is overwritten without --overwrite; with it, the clips are replaced whole.
    with pytest.raises(OptionsError, match="already holds manifest.jsonl.*--overwrite"):
        prepare(PrepareOptions(inputs=(str(path),), output_dir=str(out)))
    again = prepare(PrepareOptions(inputs=(str(path),), output_dir=str(out), overwrite=True, max_seconds=12))
    names = sorted(p.name for p in (out / "clips").iterdir())
    assert len(names) == again.rows > result.rows and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cues_longer_than_a_clip_or_heavily_overlapping(recording, tmp_path):
    path, samples, times = recording
    (a, b, ta), (_, d, tc) = times[0], times[1]
    srt = tmp_path / "other.srt"
    srt.write_text(_srt([(a, b, ta), (a + 0.1, d, tc), (FIRST_START, FIRST_START + 31, "far too long")]))
    result = prepare(PrepareOptions(inputs=(str(path),), output_dir=str(tmp_path / "out"), subtitles=str(srt)))
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert rows == [{"audio_path": "clips/talk_0001.wav", "text": f"{ta} {tc}",
                     "segments": [{"start": pytest.approx(0.2, abs=0.002), "end": pytest.approx(d - a + 0.2, abs=0.002),
                                   "text": f"{ta} {tc}"}]}]
    assert any("cue 2 " in n and "merged with it into one segment" in n for n in result.notes)
    assert any("cue 3 " in n and "over the 30-s clip limit: skipped" in n for n in result.notes)


def test_a_folder_of_pairs(say, tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    for name, text in (("a", SENTENCES[0]), ("sub/b", SENTENCES[1])):
        (folder / f"{name}.wav").write_bytes(say(text).read_bytes())
        (folder / f"{name}.txt").write_text(f"  {text}\n", encoding="utf-8")
    (folder / "lonely.wav").write_bytes(say(SENTENCES[2]).read_bytes())
    (folder / "empty.wav").write_bytes(say(SENTENCES[3]).read_bytes())
    (folder / "empty.txt").write_text("\n")
    out = tmp_path / "out"
    result = main(["prepare", str(folder), "--output_dir", str(out), "--language", "English"])
    assert result == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows == [{"audio_path": str(folder / "a.wav"), "text": SENTENCES[0], "language": "en"},
                    {"audio_path": str(folder / "sub" / "b.wav"), "text": SENTENCES[1], "language": "en"}]
    report = (out / "report.txt").read_text()
    assert "lonely.wav: no transcript beside it" in report
    assert "empty.txt: text is empty: left out" in report
    assert not (out / "clips").exists()


def test_common_voice_tsv_and_csv_tables(say, tmp_path):
    cv = tmp_path / "cv-corpus" / "en"
    (cv / "clips").mkdir(parents=True)
    for k in range(2):
        (cv / "clips" / f"common_voice_en_{k}.wav").write_bytes(say(SENTENCES[k]).read_bytes())
    header = "\t".join(["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
                        "age", "gender", "accents", "variant", "locale", "segment"])
    lines = [header] + [f"c{k}\tcommon_voice_en_{k}.wav\ts{k}\t{SENTENCES[k]}\t\t2\t0\t\t\t\t\ten\t" for k in range(2)]
    lines.append('c9\tcommon_voice_en_9.wav\ts9\tHe said "hi\t\t2\t0\t\t\t\t\ten\t')  # missing clip, stray quote
    (cv / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = prepare(PrepareOptions(inputs=(str(cv / "train.tsv"),), output_dir=str(tmp_path / "cv-out")))
    rows = [json.loads(line) for line in (tmp_path / "cv-out" / "manifest.jsonl").read_text().splitlines()]
    assert [(Path(r["audio_path"]).name, r["text"], r["language"]) for r in rows] == [
        ("common_voice_en_0.wav", SENTENCES[0], "en"), ("common_voice_en_1.wav", SENTENCES[1], "en")]
    assert result.notes == ["train.tsv line 4: audio file not found (relative paths resolve against the manifest's "
                            f"folder, {tmp_path / 'cv-out'}): left out"]

    table = tmp_path / "mine.csv"
    table.write_text(f'file,transcript\n{say(SENTENCES[2])},"{SENTENCES[2]}"\n', encoding="utf-8")
    prepare(PrepareOptions(inputs=(str(table),), output_dir=str(tmp_path / "csv-out")))
    rows = [json.loads(line) for line in (tmp_path / "csv-out" / "manifest.jsonl").read_text().splitlines()]
    assert rows == [{"audio_path": str(say(SENTENCES[2])), "text": SENTENCES[2]}]

    bad = tmp_path / "bad.csv"
    bad.write_text("name,words\nx.wav,hello\n")
    with pytest.raises(ManifestError, match=r"bad.csv: its header \(name, words\) needs an audio column"):
        prepare(PrepareOptions(inputs=(str(bad),), output_dir=str(tmp_path / "bad-out")))


def test_bad_inputs_fail_before_any_work(tmp_path, recording):
    with pytest.raises(OptionsError, match="--max_seconds 31"):
        PrepareOptions(inputs=("x",), output_dir=str(tmp_path), max_seconds=31)
    with pytest.raises(OptionsError, match="--subtitles goes with exactly one recording"):
        PrepareOptions(inputs=("a.wav", "b.wav"), output_dir=str(tmp_path), subtitles="a.srt")
    lonely = tmp_path / "lonely.wav"
    lonely.write_bytes(recording[0].read_bytes())
    with pytest.raises(OptionsError, match="has no subtitles: put lonely.srt or lonely.vtt beside it"):
        prepare(PrepareOptions(inputs=(str(lonely),), output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_prepared_clips_train_with_timestamps_and_transcripts_line_up_with_the_cues(recording, tmp_path):
    """The reporter's check: prepare a long recording with its SRT, train tiny.en with --timestamps on
    the clips, transcribe the recording: the segments start where the cues do."""
    import subprocess
    import sys

    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.transcribe import transcribe

    path, _, times = recording
    srt = tmp_path / "talk.srt"
    srt.write_text(_srt(times), encoding="utf-8")
    data = tmp_path / "data"
    prepare(PrepareOptions(inputs=(str(path),), output_dir=str(data), subtitles=str(srt), max_seconds=12))
    out = tmp_path / "model"
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "whisper_lora", "train", "--model_name_or_path", "bundled:tiny.en",
                           "--train_file", str(data / "manifest.jsonl"), "--output_dir", str(out), "--timestamps",
                           "--max_steps", "6", "--per_device_train_batch_size", "2", "--learning_rate", "3e-4",
                           "--warmup_steps", "0"], capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    options = TranscribeOptions(return_timestamps=True, language="en", precision="fp32")
    result = transcribe(str(out), [str(path)], options, echo=False, progress=False).results[0]
    assert result.ok and len(result.segments) >= len(times) // 2, result.segments
    starts = [s for s, _, _ in times]
    near = [min(abs(seg.start - s) for s in starts) for seg in result.segments]
    assert sum(d < 0.6 for d in near) >= 0.8 * len(near), list(zip([s.start for s in result.segments], near))
