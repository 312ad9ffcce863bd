"""Live streaming on this machine: how late final text comes, and how good it is.

    python benchmarks/stream_latency.py                      # tiny.en and base, policy both
    python benchmarks/stream_latency.py --policies both,agreement,turns --models bundled:tiny.en
    python benchmarks/stream_latency.py --concurrent 4 --models bundled:tiny.en
    python benchmarks/stream_latency.py --hour --models bundled:tiny.en

Files: espeak-ng paragraphs (2-3 sentences, 0.3-s pauses inside, below the turn's 0.5 s), the five
LibriVox utterances (a person reading English), and for multilingual models Dutch voice acting
(Fish Fillets NG's held-out levels, 3-4 lines joined with 0.4-s pauses), --files in all. Each file
gets 2 s of quiet after it, as a microphone keeps sending when the person stops.

Each file is streamed to a real server (`whisper-lora serve`'s app in this process, on loopback) by
a websockets client at real-time pace, in 100-ms messages. The file is also transcribed whole
(the same model, `transcribe`'s defaults) with word timestamps: those words' end times are when
each word was said, and their text is the whole-file baseline. A stream's final words are lined
up with the whole file's (difflib on normalised words):
  - final delay: when the final event holding the word arrived, less the word's end in the audio;
  - partial delay: when the word first showed (in a partial or a final) at its place;
  - WER of the final text and of the whole-file text against the reference transcripts;
  - repeats: a final that starts with the words the one before it ended with (a word said twice);
    lost: whole-file words missing from the stream's text where the stream has nothing instead;
  - the paired bootstrap 95% interval of WER(stream) - WER(whole) over the files.
--concurrent N plays N streams at once (the files shared out), decoded in batches across streams.
--simulate runs the engine alone on a virtual clock (each decode moves it by its measured time),
as fast as the CPU decodes: for trying policies; the table's rows come from real-time runs.
--hour streams one file looped for 60 minutes of audio through the engine as fast as it decodes
(the pace does not change what is decoded per chunk), printing RSS and the decode time per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bootstrap, peak_rss_mb  # noqa: E402

SR = 16000
TAIL = 2.0  # quiet after each file
PARAGRAPHS = [
    "The train to the airport leaves every twenty minutes. Tickets are sold at the machines near the "
    "entrance. Please keep your bag with you at all times.",
    "Our meeting has moved to Thursday afternoon. Bring the report on last month's sales. We will also "
    "talk about the new office.",
    "The library opens at nine in the morning. Children can borrow up to ten books. Late books cost a "
    "small fee each day.",
    "Add two cups of flour to the bowl. Stir in the milk slowly until it is smooth. Bake it for half an hour.",
    "The weather will be cloudy with some rain in the north. In the south it stays dry and warm. Tomorrow "
    "the wind turns to the west.",
    "I called the doctor this morning about my back. She can see me on Monday at ten. I will take the bus there.",
    "The museum has a new room for old maps. Some of them are five hundred years old. Entry is free on Sundays.",
    "Turn left at the second traffic light. The hotel is on the right, next to the bank. Parking is behind the building.",
    "We sold more bikes this summer than ever before. Most people bought electric ones. Next year we "
    "want to open a second shop.",
    "Please switch off your phone during the show. The first part takes one hour. There is a short break "
    "after it.",
    "The river flooded the fields near the village last week. Farmers lost most of their crops. The town "
    "will help them rebuild.",
    "My brother plays the guitar in a small band. They practise every Friday night. Their first concert "
    "is in May.",
]


def espeak_files(n: int, folder: Path) -> list[dict]:
    from whisper_lora.audio import load_audio
    from whisper_lora.synthetic.tts import synthesize_cached

    files = []
    for i in range(n):
        text = PARAGRAPHS[i % len(PARAGRAPHS)]
        voice, speed = ("en-us", "en-gb", "en-us+m3")[i % 3], (150, 165, 175)[i // len(PARAGRAPHS) % 3]
        parts = []
        for sentence in text.split(". "):
            parts.append(load_audio(synthesize_cached(sentence.rstrip(".") + ".", folder, voice=voice, speed=speed)))
            parts.append(np.zeros(int(0.3 * SR), np.float32))
        files.append({"name": f"espeak-{i}", "audio": np.concatenate(parts[:-1]), "text": text, "language": "en"})
    return files


def librivox_files(folder: Path) -> list[dict]:
    from whisper_lora.audio import load_audio
    from whisper_lora.corpora import librivox

    rows = [json.loads(line) for line in librivox.write_manifest(folder / "librivox.jsonl").read_text().splitlines()]
    return [{"name": Path(r["audio_path"]).stem, "audio": load_audio(r["audio_path"]), "text": r["text"],
             "language": "en"} for r in rows]


def dutch_files(n: int) -> list[dict]:
    from whisper_lora.audio import load_audio
    from whisper_lora.corpora import fillets

    _, _, test = fillets.split(fillets.clips())
    files = []
    for i in range(n):
        group = test[i * 4:(i + 1) * 4]
        parts, texts = [], []
        for clip in group:
            parts += [load_audio(clip.audio_path), np.zeros(int(0.4 * SR), np.float32)]
            texts.append(clip.text)
        files.append({"name": f"nl-{group[0].level}-{i}", "audio": np.concatenate(parts[:-1]),
                      "text": " ".join(texts), "language": "nl"})
    return files


def benchmark_files(model: str, n: int, folder: Path) -> list[dict]:
    english_only = model.endswith(".en")
    librivox = librivox_files(folder)
    n_dutch = 0 if english_only else n // 2
    files = espeak_files(n - len(librivox) - n_dutch, folder) + librivox + dutch_files(n_dutch)
    for f in files:
        f["audio"] = np.concatenate([f["audio"], np.zeros(int(TAIL * SR), np.float32)])
    return files


def whole_file_words(model: str, files: list[dict]) -> None:
    """Each file's whole-file text and its words with end times (word timestamps)."""
    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.transcribe import Transcriber

    for language in sorted({f["language"] for f in files}):
        group = [f for f in files if f["language"] == language]
        transcriber = Transcriber.from_spec(model, TranscribeOptions(
            language=language, word_timestamps=True, return_timestamps=True))
        for f, result in zip(group, transcriber.transcribe_arrays([f["audio"] for f in group],
                                                                  [f["name"] for f in group])):
            f["whole"] = result.text
            f["words"] = [(w.word.strip(), w.end) for s in result.segments for w in s.words]


def key(word: str) -> str:
    import re

    return re.sub(r"[^\w']", "", word.lower())


PRECISION = "auto"  # --precision
SHOW = False  # --show
CHUNK = 1.0  # --chunk
AGREE = 2  # --agree


async def play(url: str, f: dict, policy: str) -> dict:
    """Stream one file at real-time pace; its events with arrival times (seconds from its start)."""
    import websockets

    query = f"?language={f['language']}&policy={policy}&chunk={CHUNK}&agree={AGREE}"
    events = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream" + query, max_size=None) as ws:
        await ws.recv()  # ready
        start = time.monotonic()

        async def send():
            step = SR // 10
            audio = (np.clip(f["audio"], -1, 1) * 32767).astype("<i2")
            for i in range(0, len(audio), step):
                await ws.send(audio[i:i + step].tobytes())
                await asyncio.sleep(max(0.0, (i + step) / SR - (time.monotonic() - start)))
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            event = json.loads(message)
            event["at"] = time.monotonic() - start
            events.append(event)
        await sender
    return {"file": f, "events": events}


def measure(run: dict) -> dict:
    """Delays, repeats and lost words of one streamed file (see the module docstring)."""
    f, events = run["file"], run["events"]
    said = [(key(w), end) for w, end in f["words"] if key(w)]
    finals = [e for e in events if e["type"] == "final"]
    stream_words = [(key(w), e["at"]) for e in finals for w in e["text"].split() if key(w)]
    matcher = difflib.SequenceMatcher(None, [w for w, _ in said], [w for w, _ in stream_words], autojunk=False)
    final_delays = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            final_delays.append(stream_words[block.b + k][1] - said[block.a + k][1])
    lost = sum(i2 - i1 for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag == "delete")
    repeats = 0
    for a, b in zip(finals, finals[1:]):
        ka, kb = [key(w) for w in a["text"].split()], [key(w) for w in b["text"].split()]
        if a["turn"] == b["turn"] and any(ka[-n:] == kb[:n] for n in (1, 2, 3) if len(ka) >= n and len(kb) >= n):
            repeats += 1
    # partial delay: the first moment each said word shows at its place in finals + partial
    first_seen: dict[int, float] = {}
    shown_final: list[str] = []
    for e in events:
        if e["type"] == "final":
            shown_final += [key(w) for w in e["text"].split() if key(w)]
            shown = shown_final
        elif e["type"] == "partial":
            shown = shown_final + [key(w) for w in e["text"].split() if key(w)]
        else:
            continue
        m = difflib.SequenceMatcher(None, [w for w, _ in said], shown, autojunk=False)
        for block in m.get_matching_blocks():
            for k in range(block.size):
                first_seen.setdefault(block.a + k, e["at"])
    partial_delays = [t - said[i][1] for i, t in first_seen.items()]
    text = " ".join(e["text"] for e in finals)
    return {"final": final_delays, "partial": partial_delays, "repeats": repeats, "lost": lost,
            "said": len(said), "text": text}


def key_words(text: str) -> list[str]:
    return [k for k in map(key, text.split()) if k]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(label: str, files: list[dict], runs: list[dict]) -> dict:
    from whisper_lora.scoring.metrics import error_rates, utterance_errors

    measured = [measure(r) for r in runs]
    by_language: dict[str, tuple[list, list, list]] = {}
    for f, m in zip(files, measured):
        refs, whole, stream = by_language.setdefault(f["language"], ([], [], []))
        refs.append(f["text"]), whole.append(f["whole"]), stream.append(m["text"])
    final = [d for m in measured for d in m["final"]]
    partial = [d for m in measured for d in m["partial"]]
    row = {"label": label, "files": len(files), "audio_s": round(sum(len(f["audio"]) for f in files) / SR, 1),
           "final_p50": percentile(final, 50), "final_p95": percentile(final, 95),
           "partial_p50": percentile(partial, 50), "partial_p95": percentile(partial, 95),
           "repeats": sum(m["repeats"] for m in measured), "lost": sum(m["lost"] for m in measured),
           "said": sum(m["said"] for m in measured)}
    for language, (refs, whole, stream) in sorted(by_language.items()):
        row[f"wer_whole_{language}"] = 100 * error_rates(refs, whole, language).wer
        row[f"wer_stream_{language}"] = 100 * error_rates(refs, stream, language).wer
        # Paired over files: is the stream's WER above the whole file's by more than chance?
        per = [[(s.words.errors, s.words.reference_length) for s in
                (utterance_errors(r, h, language) for r, h in zip(refs, hyps))] for hyps in (whole, stream)]
        row[f"interval_{language}"] = tuple(100 * x for x in bootstrap(*per))
    if SHOW:
        for f, m in zip(files, measured):
            if key_words(m["text"]) != key_words(f["whole"]):
                print(f"  {f['name']}\n    whole:  {f['whole'].strip()}\n    stream: {m['text']}", flush=True)
    wers = "  ".join(f"{lang}: stream {row[f'wer_stream_{lang}']:.1f}% / whole {row[f'wer_whole_{lang}']:.1f}% "
                     f"({row[f'wer_stream_{lang}'] / max(row[f'wer_whole_{lang}'], 1e-9):.2f}x, stream - whole "
                     f"{row[f'interval_{lang}'][0]:+.1f} .. {row[f'interval_{lang}'][1]:+.1f} points)"
                     for lang in sorted(by_language))
    print(f"{label}: {row['files']} files, {row['audio_s']} s | final delay p50 {row['final_p50']:.2f} s, "
          f"p95 {row['final_p95']:.2f} s | partial p50 {row['partial_p50']:.2f} s, p95 {row['partial_p95']:.2f} s | "
          f"{wers} | repeats {row['repeats']}, lost {row['lost']} of {row['said']} words", flush=True)
    return row


def serve_and(model: str, work) -> object:
    from whisper_lora.serve import ServeOptions, serving

    return serving(ServeOptions(model=model, port=0, max_streams=16, precision=PRECISION))


def run_single(model: str, files: list[dict], policies: list[str]) -> list[dict]:
    rows = []
    with serve_and(model, None) as url:
        for policy in policies:
            runs = [asyncio.run(play(url, f, policy)) for f in files]
            rows.append(report(f"{model} {policy}, chunk {CHUNK:g} s, agree {AGREE}, 1 stream", files, runs))
    return rows


def simulate(transcriber, f: dict, policy: str) -> dict:
    """One file through the engine on a virtual clock: audio arrives at real-time pace, and each
    decode (with the VAD of take()) moves the clock by its measured time. The events and their
    arrival times are what a caller that decodes alone would see, without waiting for the audio."""
    from whisper_lora.streaming import Stream, StreamOptions, event_json

    stream = Stream(StreamOptions(policy=policy, chunk=CHUNK, agree=AGREE))
    audio, step = f["audio"], int(CHUNK * SR)
    now, events = 0.0, []
    while not stream.done:
        arrived = min(len(audio), int(now * SR))
        stream.append(audio[stream.received:arrived])
        if arrived >= len(audio) and not stream.finished:
            stream.finish()
        t = time.perf_counter()
        buffer = stream.take()
        if buffer is None:
            if stream.finished:
                break
            now = max(now, min((arrived // step + 1) * step, len(audio)) / SR)
            continue
        result = stream.update(transcriber.transcribe_arrays([buffer])[0].segments)
        now += time.perf_counter() - t
        events += [{**event_json(e), "at": now} for e in result]
    return {"file": f, "events": events}


def run_simulated(model: str, files: list[dict], policies: list[str]) -> list[dict]:
    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.streaming import live_options
    from whisper_lora.transcribe import Transcriber

    rows = []
    for policy in policies:
        runs = []
        for language in sorted({f["language"] for f in files}):
            transcriber = Transcriber.from_spec(model, live_options(TranscribeOptions(language=language,
                                                                                       precision=PRECISION)))
            runs += [simulate(transcriber, f, policy) for f in files if f["language"] == language]
        by_name = {r["file"]["name"]: r for r in runs}
        rows.append(report(f"{model} {policy}, chunk {CHUNK:g} s, agree {AGREE}, simulated clock", files,
                           [by_name[f["name"]] for f in files]))
    return rows


def run_concurrent(model: str, files: list[dict], n: int, policy: str) -> list[dict]:
    """n clients at once, each playing its share of the files one after another."""
    shares = [files[i::n] for i in range(n)]

    async def client(url, share):
        return [await play(url, f, policy) for f in share]

    async def all_clients(url):
        return await asyncio.gather(*(client(url, share) for share in shares))

    with serve_and(model, None) as url:
        t = time.monotonic()
        results = asyncio.run(all_clients(url))
        wall = time.monotonic() - t
    ordered_files = [f for share in shares for f in share]
    runs = [r for share_runs in results for r in share_runs]
    audio = max(sum(len(f["audio"]) for f in share) / SR for share in shares)
    print(f"{n} streams: {wall:.1f} s wall for the longest client's {audio:.1f} s of audio", flush=True)
    rows = [report(f"{model} {policy}, chunk {CHUNK:g} s, agree {AGREE}, {n} streams at once", ordered_files, runs)]
    for i, share_runs in enumerate(results):  # each client's delays over time: does any fall behind?
        delays = [d for r in share_runs for d in measure(r)["final"]]
        third = max(1, len(delays) // 3)
        print(f"  client {i}: final delay p50 {percentile(delays, 50):.2f} s, p95 {percentile(delays, 95):.2f} s; "
              f"first third p50 {percentile(delays[:third], 50):.2f} s, last third {percentile(delays[-third:], 50):.2f} s")
    return rows


def run_hour(model: str, files: list[dict], minutes: float) -> None:
    import resource

    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.streaming import Final, Stream, StreamOptions
    from whisper_lora.streaming.play import play_array
    from whisper_lora.transcribe import Transcriber

    english = [f for f in files if f["language"] == "en"]
    loop = np.concatenate([f["audio"] for f in english])
    audio = np.tile(loop, int(np.ceil(minutes * 60 * SR / len(loop))))[:int(minutes * 60 * SR)]
    transcriber = Transcriber.from_spec(model, TranscribeOptions(language="en", return_timestamps=True, pack=False,
                                                                 temperatures=(0.0,)))
    stream = Stream(StreamOptions(chunk=CHUNK, agree=AGREE))
    decodes: list[tuple[float, float, float]] = []  # (stream minute, seconds, buffer seconds)
    rss: list[tuple[float, float]] = []
    words = 0

    def rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2 ** 20

    def decode(buffer):
        t = time.perf_counter()
        segments = transcriber.transcribe_arrays([buffer])[0].segments
        decodes.append((stream.received / SR / 60, time.perf_counter() - t, len(buffer) / SR))
        if not rss or decodes[-1][0] - rss[-1][0] >= 5:
            rss.append((decodes[-1][0], rss_mb()))
        return segments

    def seen(timed):
        nonlocal words
        if isinstance(timed.event, Final):
            words += len(timed.event.text.split())

    t = time.monotonic()
    play_array(stream, audio, decode, seen, realtime=False)
    wall = time.monotonic() - t
    print(f"{minutes:g} min looped ({len(loop) / SR:.0f}-s loop) in {wall / 60:.1f} min: {len(decodes)} decodes, "
          f"{words} final words", flush=True)
    for minute, mb in rss:
        print(f"  minute {minute:5.1f}: RSS {mb:.0f} MB", flush=True)
    print(f"  RSS growth after minute 5: {rss[-1][1] - next(mb for m, mb in rss if m >= 5):+.0f} MB; peak {peak_rss_mb():.0f} MB")
    for lo in range(0, int(minutes), 10):
        part = [d for d in decodes if lo <= d[0] < lo + 10]
        if part:
            print(f"  minutes {lo:2d}-{lo + 10:2d}: decode per chunk mean {statistics.mean(p[1] for p in part):.3f} s, "
                  f"p95 {percentile([p[1] for p in part], 95):.3f} s, buffer mean {statistics.mean(p[2] for p in part):.1f} s, "
                  f"max {max(p[2] for p in part):.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="bundled:tiny.en,bundled:base")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--policies", default="both")
    parser.add_argument("--chunk", type=float, default=1.0, help="seconds of new audio between decodes")
    parser.add_argument("--agree", type=int, default=2, help="successive decodes that must agree on a word")
    parser.add_argument("--concurrent", type=int, default=0, help="also play this many streams at once")
    parser.add_argument("--hour", action="store_true", help="only the hour-long looped stream")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--precision", default="auto", help="the streams' decoding precision (auto, fp32, ...)")
    parser.add_argument("--hold", type=float, help="try another engine.HOLD (seconds)")
    parser.add_argument("--min_context", type=float, help="try another engine.MIN_CONTEXT (seconds)")
    parser.add_argument("--show", action="store_true", help="print each file whose stream text differs from its whole text")
    parser.add_argument("--simulate", action="store_true",
                        help="no server, no waiting: the engine on a virtual clock (for trying policies quickly)")
    parser.add_argument("--work", default="/tmp/stream-bench")
    args = parser.parse_args()
    global CHUNK, AGREE, PRECISION, SHOW
    CHUNK, AGREE, PRECISION, SHOW = args.chunk, args.agree, args.precision, args.show
    from whisper_lora.streaming import engine

    engine.HOLD = engine.HOLD if args.hold is None else args.hold
    engine.MIN_CONTEXT = engine.MIN_CONTEXT if args.min_context is None else args.min_context
    print(f"engine HOLD {engine.HOLD} s, MIN_CONTEXT {engine.MIN_CONTEXT} s", flush=True)
    import logging

    logging.disable(logging.WARNING)
    import torch

    print(f"torch threads {torch.get_num_threads()}", flush=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        files = benchmark_files(model, args.files, work)
        if args.hour:
            run_hour(model, files, args.minutes)
            continue
        t = time.monotonic()
        whole_file_words(model, files)
        print(f"{model}: whole-file transcription of {len(files)} files in {time.monotonic() - t:.0f} s", flush=True)
        if args.simulate:
            run_simulated(model, files, args.policies.split(","))
        elif args.concurrent:
            run_concurrent(model, files, args.concurrent, args.policies.split(",")[0])
        else:
            run_single(model, files, args.policies.split(","))


if __name__ == "__main__":
    main()
