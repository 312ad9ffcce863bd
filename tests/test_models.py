"""Model sources: CTranslate2 conversion checked against CTranslate2 itself, every spec kind, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from whisper_lora import ModelLoadError, load_model
from whisper_lora.models.bundled import locate
from whisper_lora.models import resolve_hf_folder

from .conftest import SENTENCES

EXTRA_SENTENCES = [
    "My brother bought a new car last week.",
    "The children are playing in the garden.",
]

ct2 = pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")


def _audio(path):
    import soundfile as sf
    import soxr

    audio, sr = sf.read(str(path), dtype="float32")
    return soxr.resample(audio, sr, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_ct2_folder():
    folder, _ = locate("tiny.en")
    return folder


@pytest.fixture(scope="module")
def fw_features():
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor()

    def features(audio):
        # As faster-whisper's transcribe does: log-mel of the audio (160 samples of padding),
        # then zero mel frames up to the 3000 of a 30 s window.
        mel = extractor(audio)[:, :3000]
        mel = np.pad(mel, ((0, 0), (0, 3000 - mel.shape[1])))
        return torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None]

    return features


def test_converted_tiny_en_equals_faster_whisper(say, bundled_tiny_en, tiny_ct2_folder, fw_features):
    """Greedy HF transcripts of the converted weights equal faster-whisper's beam-1, no-fallback
    transcripts of the original CTranslate2 model, given the same log-mel features."""
    model, processor = bundled_tiny_en
    fw = faster_whisper.WhisperModel(str(tiny_ct2_folder), device="cpu", compute_type="float32")
    prompt = [model.config.decoder_start_token_id, model.generation_config.no_timestamps_token_id]
    equal = 0
    for text in SENTENCES + EXTRA_SENTENCES:
        audio = _audio(say(text))
        segments, _ = fw.transcribe(audio, beam_size=1, temperature=0.0, without_timestamps=True,
                                    condition_on_previous_text=False, vad_filter=False)
        theirs = "".join(s.text for s in segments).strip()
        features = fw_features(audio)
        ids = model.generate(features)
        ours = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        assert len(ours.split()) >= 3  # real speech gives real words, not an empty string
        if ours == theirs:
            equal += 1
            continue
        # Two float32 engines may only part ways where the top two tokens are a near tie.
        their_ids = processor.tokenizer(" " + theirs, add_special_tokens=False).input_ids
        our_ids = processor.tokenizer(" " + ours, add_special_tokens=False).input_ids
        split = next(i for i, (a, b) in enumerate(zip(our_ids + [-1], their_ids + [-2])) if a != b)
        with torch.no_grad():
            logits = model(input_features=features,
                           decoder_input_ids=torch.tensor([prompt + our_ids[:split]])).logits[0, -1]
        top2 = torch.log_softmax(logits.double(), -1).topk(2).values
        assert float(top2[0] - top2[1]) < 0.1, f"{ours!r} != {theirs!r} with a clear margin"
    assert equal >= 5


def test_logits_close_to_ctranslate2(say, bundled_tiny_en, tiny_ct2_folder):
    model, processor = bundled_tiny_en
    audio = _audio(say(SENTENCES[0]))
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    engine = ct2.models.Whisper(str(tiny_ct2_folder), device="cpu", compute_type="float32")
    prompt = [model.config.decoder_start_token_id, model.generation_config.no_timestamps_token_id]
    result = engine.generate(ct2.StorageView.from_array(features.numpy()), [prompt], beam_size=1,
                             return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])[0]
    tokens = result.sequences_ids[0]
    steps = [np.asarray(step) for step in result.logits[0]]
    with torch.no_grad():
        ids = torch.tensor([prompt + tokens])
        logits = model(input_features=features, decoder_input_ids=ids).logits[0]
    ours = torch.log_softmax(logits.double(), -1).numpy()
    for i, theirs in enumerate(steps[: len(tokens)]):
        theirs = theirs.reshape(-1).astype(np.float64)
        theirs = theirs - np.logaddexp.reduce(theirs)  # normalise either logits or log-probs
        assert np.abs(ours[len(prompt) - 1 + i] - theirs).max() < 5e-3, f"step {i}"
        assert int(ours[len(prompt) - 1 + i].argmax()) == tokens[i]


def test_transcribes_real_speech(say, bundled_tiny_en):
    model, processor = bundled_tiny_en
    audio = _audio(say("The weather is very nice today."))
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    text = processor.batch_decode(model.generate(features), skip_special_tokens=True)[0].lower()
    assert "very nice today" in text  # tiny.en hears espeak's "the weather" as "whenever"


def test_generation_config_complete_and_timestamps_work(say, bundled_tiny_en):
    model, processor = bundled_tiny_en
    gc = model.generation_config
    assert gc.no_timestamps_token_id == 50362 and gc.alignment_heads and gc.suppress_tokens
    assert not gc.is_multilingual
    tokenizer = processor.tokenizer  # as OpenAI's HF tokenizers: <|endoftext|> pads (the HF blog's collator)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == gc.eos_token_id == 50256
    assert tokenizer.pad([{"input_ids": [1, 2]}, {"input_ids": [3]}])["input_ids"][1] == [3, 50256]
    audio = _audio(say(SENTENCES[1]))
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    out = model.generate(features, return_timestamps=True)
    offsets = processor.tokenizer.decode(out[0], output_offsets=True)["offsets"]
    assert offsets, "no timestamped segment"
    start, end = offsets[0]["timestamp"]
    assert 0.0 <= start < end <= len(audio) / 16000 + 1.0


def test_bundled_base_is_multilingual_and_takes_language(say):
    model, processor = load_model("bundled:base")
    gc = model.generation_config
    assert gc.is_multilingual and gc.lang_to_id["<|zh|>"] == 50260 and gc.task_to_id["transcribe"] == 50359
    audio = _audio(say("Please call me back when you get home tonight."))
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    out = model.generate(features, language="en", task="transcribe")
    text = processor.batch_decode(out, skip_special_tokens=True)[0].lower()
    assert "call" in text and "home" in text


def test_saved_folder_reloads_with_plain_transformers(tmp_path, say, bundled_tiny_en):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model, processor = bundled_tiny_en
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = WhisperForConditionalGeneration.from_pretrained(tmp_path)
    proc2 = WhisperProcessor.from_pretrained(tmp_path)
    audio = _audio(say(SENTENCES[2]))
    f = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    assert proc2.batch_decode(again.generate(f), skip_special_tokens=True) == \
        processor.batch_decode(model.generate(f), skip_special_tokens=True)
    # load_model on the saved HF folder and on the faster-whisper folder agree too
    m3, p3 = load_model(str(tmp_path))
    assert p3.batch_decode(m3.generate(f), skip_special_tokens=True) == \
        processor.batch_decode(model.generate(f), skip_special_tokens=True)


def test_ct2_folder_and_cache(tmp_path, monkeypatch, tiny_ct2_folder):
    monkeypatch.setenv("WHISPER_LORA_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "fw"
    shutil.copytree(tiny_ct2_folder, copy)
    first = resolve_hf_folder(str(copy))
    assert (tmp_path / "cache" / "converted") in __import__("pathlib").Path(first).parents
    assert resolve_hf_folder(str(copy)) == first  # cached: keyed by the weights' hash
    model, _ = load_model(str(copy))
    assert model.config.vocab_size == 51864


def test_openai_pt_checkpoint_roundtrip(tmp_path, bundled_tiny_en):
    """Write the weights as openai-whisper does, then load the .pt: the weights must match."""
    from whisper_lora.models.openai_to_hf import hf_name

    model, _ = bundled_tiny_en
    sd = model.state_dict()
    names = {}
    for side in ("encoder", "decoder"):
        n_layers = getattr(model.config, f"{side}_layers")
        candidates = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "positional_embedding",
                      "ln_post.weight", "ln_post.bias", "ln.weight", "ln.bias", "token_embedding.weight"]
        for i in range(n_layers):
            for blk in ("attn", "cross_attn"):
                for p in ("query", "value", "out"):
                    candidates += [f"blocks.{i}.{blk}.{p}.weight", f"blocks.{i}.{blk}.{p}.bias"]
                candidates += [f"blocks.{i}.{blk}.key.weight", f"blocks.{i}.{blk}_ln.weight",
                               f"blocks.{i}.{blk}_ln.bias"]
            for p in ("mlp.0", "mlp.2", "mlp_ln"):
                candidates += [f"blocks.{i}.{p}.weight", f"blocks.{i}.{p}.bias"]
        for c in candidates:
            hf = hf_name(f"{side}.{c}")
            if hf in sd:
                names[f"{side}.{c}"] = sd[hf].clone()
    cfg = model.config
    dims = dict(n_mels=cfg.num_mel_bins, n_audio_ctx=cfg.max_source_positions, n_audio_state=cfg.d_model,
                n_audio_head=cfg.encoder_attention_heads, n_audio_layer=cfg.encoder_layers,
                n_vocab=cfg.vocab_size, n_text_ctx=cfg.max_target_positions, n_text_state=cfg.d_model,
                n_text_head=cfg.decoder_attention_heads, n_text_layer=cfg.decoder_layers)
    path = tmp_path / "tiny.en.pt"
    torch.save({"dims": dims, "model_state_dict": names}, path)
    loaded, processor = load_model(str(path), cache_dir=tmp_path / "c")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 50362


@pytest.mark.parametrize("spec, needle", [
    ("/nonexistent/model/folder", "no such Whisper model"),
    ("bundled:large", "unknown bundled model"),
    ("./missing.pt", "not found"),
])
def test_bad_specs_say_what_to_do(spec, needle):
    with pytest.raises(ModelLoadError, match=needle):
        load_model(spec)


def test_hub_unreachable_lists_offline_choices(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model("openai/whisper-small", cache_dir=tmp_path)
    msg = str(err.value)
    assert "hub" in msg and "bundled:tiny.en" in msg and "faster-whisper" in msg


def test_hub_id_without_network_fails_at_once(tmp_path, monkeypatch):
    """Not offline by setting, but the hub's host refuses: the clear error that says so comes from
    the reachability check, before huggingface_hub's minute of retries could start."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as closed:  # a port on this machine that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache and the hub is unreachable"):
        load_model("openai/whisper-small", cache_dir=tmp_path)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not a Whisper model folder"):
        load_model(str(tmp_path))


def test_damaged_ct2_model_bin(tmp_path, tiny_ct2_folder):
    copy = tmp_path / "fw"
    shutil.copytree(tiny_ct2_folder, copy)
    data = (copy / "model.bin").read_bytes()
    (copy / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(str(copy), cache_dir=tmp_path / "c")


def test_package_exports_resolve():
    """Every name in whisper_lora.__all__ imports (the lazy ones on first use)."""
    import whisper_lora

    for name in whisper_lora.__all__:
        assert getattr(whisper_lora, name) is not None, name
    with pytest.raises(AttributeError):
        whisper_lora.no_such_name


def test_import_installs_no_warning_filter():
    """Importing the package changes no global state; peft's warning filter comes with peft."""
    import subprocess
    import sys

    code = ("import warnings, whisper_lora, whisper_lora.models; "
            "assert not [f for f in warnings.filters if f[1] and 'checkpointing' in f[1].pattern]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_adapter_loads_without_peft_warning(tmp_path):
    import warnings

    from whisper_lora.models import quiet_peft_warnings

    from .adapter_helpers import make_adapter

    adapter = make_adapter(tmp_path / "run", base="bundled:tiny.en")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(str(adapter))
        n_filters = len(warnings.filters)
        quiet_peft_warnings()  # again: nothing more to add
        assert len(warnings.filters) == n_filters
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
