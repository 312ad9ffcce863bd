"""Large manifests (validation.py's duration cache, training's rows): a 20,000-row JSON Lines
manifest validates without holding audio, in bounded memory, and each file is measured once.
benchmarks/million_rows.py runs the same at a million rows and records the figures."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import soundfile

from whisper_lora.data.validation import CACHE_MIN_ROWS, DurationCache, validate_manifest

ROWS = 20_000
FILES = 20


def _manifest(tmp_path):
    """ROWS rows over FILES clips of 1-3 s, each row its own path (a hard link)."""
    rng = np.random.default_rng(0)
    for k in range(FILES):
        soundfile.write(tmp_path / f"clip{k}.wav", (0.05 * rng.standard_normal(16000 + 1600 * k)).astype(np.float32),
                        16000, subtype="PCM_16")
    (tmp_path / "links").mkdir()
    lines = []
    for i in range(ROWS):
        os.link(tmp_path / f"clip{i % FILES}.wav", tmp_path / "links" / f"{i}.wav")
        lines.append(json.dumps({"audio_path": f"links/{i}.wav", "text": f"sentence number {i % 97}"}))
    manifest = tmp_path / "big.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_twenty_thousand_rows_validate_in_bounded_memory_and_each_file_is_measured_once(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_LORA_CACHE", str(tmp_path / "cache"))
    manifest = _manifest(tmp_path)
    tracemalloc.start()
    report = validate_manifest(manifest, decode=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.ok and len(report.good_rows) == ROWS
    assert report.good_rows[FILES + 3].duration == report.good_rows[3].duration == (16000 + 1600 * 3) / 16000
    # Rows, not audio: 20,000 clips of 1-3 s are 2.5 GB as float32; the rows take a few KB each.
    print(f"validation peak: {peak / 1e6:.1f} MB for {ROWS} rows")
    assert peak < 2_500 * ROWS, f"{peak / 1e6:.0f} MB for {ROWS} rows"

    # Each distinct file once: hard links share one cache entry (file identity, not path).
    cache = DurationCache.for_manifest(manifest)
    assert len(cache.entries) == FILES and not any(decoded for _, decoded in cache.entries.values())
    # The next validation takes lengths from the cache instead of opening the files: a length
    # planted there comes back. Decoding needs entries made by decoding, so it measures afresh.
    key = next(k for k, (seconds, _) in cache.entries.items() if seconds == 1.0)
    cache.entries[key] = [12.5, False]
    cache.changed = True
    cache.save()
    assert validate_manifest(manifest, decode=False).good_rows[0].duration == 12.5
    decoded = validate_manifest(manifest, decode=True)
    assert decoded.good_rows[0].duration == 1.0
    assert all(d for _, d in DurationCache.for_manifest(manifest).entries.values())


def test_a_changed_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_LORA_CACHE", str(tmp_path / "cache"))
    clip = tmp_path / "a.wav"
    soundfile.write(clip, np.zeros(16000, np.float32), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_path": "a.wav", "text": f"hello {i}"}) + "\n"
                                for i in range(CACHE_MIN_ROWS)))  # rows 2... repeat the file: errors
    assert validate_manifest(manifest).good_rows[0].duration == 1.0
    assert len(DurationCache.for_manifest(manifest).entries) == 1
    soundfile.write(clip, np.zeros(32000, np.float32), 16000)
    assert validate_manifest(manifest).good_rows[0].duration == 2.0


def test_small_manifests_leave_no_cache_file(tmp_path, monkeypatch, english_clips):
    monkeypatch.setenv("WHISPER_LORA_CACHE", str(tmp_path / "cache"))
    manifest = tmp_path / "small.json"
    manifest.write_text(json.dumps([{"audio_path": str(p), "text": t} for p, t in english_clips]))
    assert validate_manifest(manifest).ok
    assert not (tmp_path / "cache").exists()
