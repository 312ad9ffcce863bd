"""The OpenAI-compatible server, driven by the official `openai` client over loopback.

A real uvicorn server on a free port serves bundled tiny.en with two adapters (real LoRA
weights, drawn at random so that they change the transcripts), and every answer is checked
against what `whisper-lora transcribe` gives for the same model and file."""

from __future__ import annotations

import concurrent.futures
import re
import socket

import httpx
import pytest

from whisper_lora.serve import serving
from whisper_lora.serve.batcher import Batcher

from .adapter_helpers import make_adapter
from .test_writers import SRT_TIME, VTT_TIME, parse_cues

openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"calls": make_adapter(root / "calls", seed=2, scale=0.03),
            "radio": make_adapter(root / "radio", seed=5, scale=0.025)}


@pytest.fixture(scope="module")
def server(adapters):
    from whisper_lora.serve.options import ServeOptions

    options = ServeOptions(model="bundled:tiny.en", adapters={k: str(v) for k, v in adapters.items()},
                           port=free_port(), max_upload_mb=2.0)
    with serving(options) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def expected(adapters, english_clips):
    """(model name, clip) -> `whisper-lora transcribe`'s text, for the pairs it decodes the same way
    twice. A window that fails the guards is decoded again by sampling (openai-whisper's
    temperature fallback), which no two runs share: those pairs cannot be compared."""
    specs = {"whisper-1": "bundled:tiny.en", **adapters}
    out = {}
    for name, spec in specs.items():
        for path, _ in english_clips:
            first, second = (transcribe_one(spec, path).text for _ in range(2))
            if first == second:
                out[name, path] = first
    for name in specs:
        assert sum(key[0] == name for key in out) >= 3, f"{name}: too few clips decode the same way twice"
    return out


# tiny.en hears "Kubernetes" as "Cuba needs" unless a prompt spells it (tests/test_words.py)
RARE_WORDS = "We deployed the cluster with Kubernetes and Grafana."
RARE_PROMPT = "Kubernetes, Grafana"
DRUG = "The new drug is called Trivalenza and it helps with headaches."  # tiny.en: "Trivenza" (test_glossary_decoding.py)


def transcribe_one(spec, path, timestamps=False, merge=False, **options):
    """`whisper-lora transcribe SPEC PATH [--return_timestamps] [--merge] [...]`'s result."""
    from whisper_lora.transcribe import TranscribeOptions, transcribe

    summary = transcribe(spec, [str(path)], TranscribeOptions(return_timestamps=timestamps, merge=merge, **options),
                         echo=False, progress=False)
    return summary.results[0]


def test_loading_the_models_prints_no_progress_bars(adapters, capfd):
    from transformers.utils import logging as hf_logging

    from whisper_lora.serve.models import ModelSet
    from whisper_lora.serve.options import ServeOptions

    assert hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    served = ModelSet.load(ServeOptions(model="bundled:tiny.en", adapters={k: str(v) for k, v in adapters.items()}))
    assert served.adapters == ["calls", "radio"]
    assert "Loading weights" not in capfd.readouterr().err  # the server's log: one bar per model, unwatched
    assert hf_logging.is_progress_bar_enabled()  # and the bars are back on for everyone else


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == ["whisper-1", "calls", "radio"]
    health = httpx.get(f"{server}/health").json()
    assert health == {"status": "ok", "models": ["whisper-1", "calls", "radio"]}


def test_each_adapter_transcribes_as_the_inference_command_does(client, expected):
    for (name, path), text in expected.items():
        with open(path, "rb") as f:
            assert client.audio.transcriptions.create(model=name, file=f).text == text, (name, path)
    # The adapters really are other models: they change transcripts of the base model's.
    for adapter in ("calls", "radio"):
        assert any(text != expected.get(("whisper-1", path)) for (name, path), text in expected.items()
                   if name == adapter)


def test_every_response_format(client, english_clips):
    path, sentence = english_clips[0]
    expected = transcribe_one("bundled:tiny.en", path, timestamps=True)
    audio = path.read_bytes()

    def ask(fmt, **kw):
        return client.audio.transcriptions.create(model="whisper-1", file=(path.name, audio), response_format=fmt,
                                                  **kw)

    assert ask("json").text.strip()
    assert ask("text").strip() == transcribe_one("bundled:tiny.en", path).text
    srt = parse_cues(ask("srt"), SRT_TIME, numbered=True)
    vtt_text = ask("vtt")
    assert vtt_text.startswith("WEBVTT\n")
    vtt = parse_cues(vtt_text.removeprefix("WEBVTT\n"), VTT_TIME, numbered=False)
    times = [(round(s.start, 3), round(s.end, 3)) for s in expected.segments]
    assert [c[:2] for c in srt] == times and [c[:2] for c in vtt] == times
    verbose = ask("verbose_json", timestamp_granularities=["segment"])
    assert verbose.language == "english" and verbose.text == expected.text
    assert verbose.duration == pytest.approx(expected.duration, abs=1e-3)
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(a, b, s.text) for (a, b), s
                                                                    in zip(times, expected.segments)]


def test_word_timestamps_and_prompt_over_the_api(client, english_clips, say):
    """timestamp_granularities[] word gives OpenAI's words list, the same words and times as the
    transcribe command's --word_timestamps; the prompt field spells a rare word right."""
    path, _ = english_clips[0]
    expected = transcribe_one("bundled:tiny.en", path, word_timestamps=True)
    verbose = client.audio.transcriptions.create(model="whisper-1", file=(path.name, path.read_bytes()),
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    words = [w for s in expected.segments for w in s.words]
    assert len(words) >= 5
    assert [(w.word, w.start, w.end) for w in verbose.words] == [(w.word.strip(), round(w.start, 3), round(w.end, 3))
                                                                 for w in words]
    path = say(RARE_WORDS)
    prompted = client.audio.transcriptions.create(model="whisper-1", file=(path.name, path.read_bytes()),
                                                  prompt=RARE_PROMPT).text
    assert "Kubernetes" in prompted and "Grafana" in prompted, prompted


def test_a_glossary_per_request_and_per_model_over_the_api(client, say, tmp_path):
    """The request's glossary field (sent by the official client as an extra form field), and
    --glossary NAME=FILE for the requests to that model that send none."""
    from whisper_lora.serve.options import ServeOptions

    path = say(DRUG)
    audio = (path.name, path.read_bytes())
    plain = client.audio.transcriptions.create(model="whisper-1", file=audio).text
    assert "Trivalenza" not in plain
    asked = client.audio.transcriptions.create(model="whisper-1", file=audio,
                                               extra_body={"glossary": "Kilimanjaro\nTrivalenza\nPtolemy"}).text
    assert "Trivalenza" in asked, asked
    terms = tmp_path / "terms.txt"
    terms.write_text("Trivalenza\nKilimanjaro\n", encoding="utf-8")
    options = ServeOptions(model="bundled:tiny.en", port=free_port(), glossaries={"whisper-1": str(terms)})
    with serving(options) as url:
        own = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert "Trivalenza" in own.audio.transcriptions.create(model="whisper-1", file=audio).text
        # a request's own glossary replaces the model's
        assert own.audio.transcriptions.create(model="whisper-1", file=audio,
                                               extra_body={"glossary": "Kilimanjaro, Ptolemy"}).text == plain


def test_a_glossary_for_a_model_not_served_is_refused():
    from whisper_lora.errors import OptionsError
    from whisper_lora.serve.options import ServeOptions

    with pytest.raises(OptionsError, match="--glossary calls=...: no served model is named 'calls'"):
        ServeOptions(model="bundled:tiny.en", glossaries={"calls": "terms.txt"})


def test_unknown_model_is_a_404_in_openais_shape(client, server, english_clips):
    path, _ = english_clips[0]
    with pytest.raises(openai.NotFoundError) as info:
        client.audio.transcriptions.create(model="whisper-9", file=path.open("rb"))
    assert info.value.body["code"] == "model_not_found" and "whisper-1, calls, radio" in info.value.body["message"]


@pytest.mark.parametrize("files, data, status, param", [
    ({"file": ("a.wav", b"<html>no audio here</html>" * 40)}, {"model": "calls"}, 400, "file"),
    ({"file": ("a.wav", b"")}, {"model": "calls"}, 400, "file"),
    ({"file": ("big.wav", b"\0" * (3 << 20))}, {"model": "calls"}, 413, "file"),
    ({}, {"model": "calls"}, 400, "file"),
    ("clip", {}, 400, "model"),
    ("clip", {"model": "calls", "response_format": "docx"}, 400, "response_format"),
    ("clip", {"model": "calls", "temperature": "hot"}, 400, "temperature"),
    ("clip", {"model": "calls", "temperature": "1.5"}, 400, "temperature"),
    ("clip", {"model": "calls", "language": "klingon"}, 400, "language"),
    ("clip", {"model": "calls", "language": "de"}, 400, "language"),  # tiny.en is English-only
    ("clip", {"model": "calls", "glossary": " , ,"}, 400, "glossary"),
    ("clip", {"model": "calls", "glossary": "Barendrecht " * 120}, 400, "glossary"),  # over the prompt's 223 tokens
    ("clip", {"model": "calls", "timestamp_granularities[]": "letter", "response_format": "verbose_json"}, 400,
     "timestamp_granularities[]"),
    ("clip", {"model": "calls", "timestamp_granularities[]": "word", "response_format": "json"}, 400,
     "timestamp_granularities[]"),
])
def test_bad_requests_are_refused_and_the_server_keeps_serving(client, server, english_clips, files, data, status,
                                                               param):
    path, _ = english_clips[1]
    if files == "clip":
        files = {"file": (path.name, path.read_bytes())}
    response = httpx.post(f"{server}/v1/audio/transcriptions", files=files, data=data, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"
    assert client.audio.transcriptions.create(model="calls", file=path.open("rb")).text  # still serving


def test_translation_needs_a_multilingual_model(client, english_clips):
    path, _ = english_clips[0]
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(model="whisper-1", file=path.open("rb"))


def test_concurrent_clients_each_get_their_own_transcript(client, english_clips):
    """16 clients at once, over three models: decoded in shared batches (and shared 30-s windows),
    each answer is its own file's: closer to the sentence spoken in it than to any other."""
    jobs = [(["whisper-1", "calls", "radio"][i % 3], english_clips[i % len(english_clips)]) for i in range(16)]

    def ask(job):
        model, (path, _) = job
        return client.audio.transcriptions.create(model=model, file=path.open("rb")).text

    def share(answer, text):
        words = set(re.findall(r"[a-z']+", text.lower()))
        return len(words & set(re.findall(r"[a-z']+", answer.lower()))) / len(words)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, jobs))
    for (model, (path, spoken)), answer in zip(jobs, answers):
        others = [share(answer, text) for _, text in english_clips if text != spoken]
        assert share(answer, spoken) > max(others), (model, spoken, answer)


def test_api_key_is_required_when_set(english_clips):
    from whisper_lora.serve.options import ServeOptions

    path, _ = english_clips[2]
    with serving(ServeOptions(model="bundled:tiny.en", port=0, api_key="s3cret")) as url:  # 0: a free port
        assert not url.endswith(":0")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert good.audio.transcriptions.create(model="whisper-1", file=path.open("rb")).text
        assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(httpx.ConnectError):  # the server stops with the block
        httpx.get(f"{url}/health", timeout=5)


def test_a_failing_request_fails_alone_in_its_batch():
    """The batcher decodes a batch together; when that fails, each request alone, so only the
    bad one gets the error."""
    calls = []

    def decode(job, audios, names):
        calls.append(list(names))
        if "bad" in names:
            raise ValueError("cannot decode bad")
        return [f"{job}:{n}" for n in names]

    batcher = Batcher(decode, max_batch=8, wait=0.2)
    try:
        futures = {n: batcher.submit("j", None, n) for n in ["a", "bad", "b"]}
        assert futures["a"].result(5) == "j:a" and futures["b"].result(5) == "j:b"
        with pytest.raises(ValueError):
            futures["bad"].result(5)
        assert calls[0] == ["a", "bad", "b"]  # one batch first
    finally:
        batcher.close()


def test_batches_are_split_by_job():
    seen = []
    batcher = Batcher(lambda job, audios, names: seen.append((job, names)) or names, max_batch=8, wait=0.2)
    try:
        futures = [batcher.submit(job, None, name) for job, name in [("x", "1"), ("y", "2"), ("x", "3")]]
        assert [f.result(5) for f in futures] == ["1", "2", "3"]
        assert sorted(seen) == [("x", ["1", "3"]), ("y", ["2"])]
    finally:
        batcher.close()


def test_a_long_upload_is_transcribed_whole(client, english_clips, tmp_path):
    import numpy as np
    import soundfile

    from whisper_lora.audio import SAMPLE_RATE, load_audio

    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    pieces = [piece for path, _ in english_clips * 3 for piece in (load_audio(path), pause)]
    long = tmp_path / "long.flac"
    soundfile.write(long, np.concatenate(pieces), SAMPLE_RATE)
    result = client.audio.transcriptions.create(model="whisper-1", file=long.open("rb"),
                                                response_format="verbose_json")
    expected = transcribe_one("bundled:tiny.en", long, timestamps=True)
    assert result.duration > 40 and result.duration == pytest.approx(expected.duration, abs=1e-3)
    assert result.segments[-1].end > 35  # the end of the file is transcribed too
    if expected == transcribe_one("bundled:tiny.en", long, timestamps=True):  # no sampled fallback
        assert result.text == expected.text


@pytest.mark.slow
def test_translation_on_a_multilingual_model(say):
    from whisper_lora.serve.options import ServeOptions

    german = say("Ich möchte bitte eine Tasse Kaffee mit Milch.", voice="de")
    with serving(ServeOptions(model="bundled:base", port=free_port())) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        english = client.audio.translations.create(model="whisper-1", file=german.open("rb"),
                                                   response_format="verbose_json")
        spoken = client.audio.transcriptions.create(model="whisper-1", file=german.open("rb"),
                                                    response_format="verbose_json")
    assert english.task == "translate" and english.language == "german"
    assert "coffee" in english.text.lower() and "kaffee" not in english.text.lower()
    assert spoken.language == "german" and "kaffee" in spoken.text.lower()


def test_a_training_output_folder_alone_is_served_merged(adapters, english_clips):
    from whisper_lora.serve.options import ServeOptions

    path, _ = english_clips[1]
    with serving(ServeOptions(model=str(adapters["calls"]), port=free_port())) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        got, again = (client.audio.transcriptions.create(model="whisper-1", file=path.open("rb")).text
                      for _ in range(2))
    expected, twice = (transcribe_one(adapters["calls"], path, merge=True).text for _ in range(2))
    if expected == twice:  # else the temperature fallback sampled: no two runs agree
        assert got == again == expected
