"""Merge and export on the real tiny.en with a real (random-B) LoRA adapter and espeak-ng speech:
merged transcripts equal base + adapter; the CTranslate2 export decodes the same tokens as HF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from whisper_lora.errors import OptionsError, WhisperLoraError
from whisper_lora.export import ExportOptions, export
from whisper_lora.export.merge import MergeOptions, merge
from whisper_lora.models import load_model

from .adapter_helpers import make_adapter

N_CLIPS = 3  # CPU time: each greedy decode of tiny.en costs about a second


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return make_adapter(tmp_path_factory.mktemp("run") / "output", base="bundled:tiny.en", scale=0.01)


@pytest.fixture(scope="module")
def features(english_clips):
    from transformers import WhisperFeatureExtractor

    from whisper_lora.audio import load_audio
    from whisper_lora.models import resolve_hf_folder

    fe = WhisperFeatureExtractor.from_pretrained(resolve_hf_folder("bundled:tiny.en"))
    audios = [load_audio(path) for path, _ in english_clips[:N_CLIPS]]
    return fe(audios, sampling_rate=16000, return_tensors="pt").input_features


def greedy_ids(model, features) -> list[list[int]]:
    """Greedy decode without timestamps; the text tokens only (prompt and end token stripped)."""
    with torch.no_grad():
        out = model.generate(features, num_beams=1, do_sample=False, return_timestamps=False)
    eot = model.generation_config.eos_token_id
    return [[t for t in seq.tolist() if t < eot] for seq in out]


@pytest.fixture(scope="module")
def adapter_ids(adapter, features):
    model, _ = load_model(str(adapter))
    return greedy_ids(model, features)


@pytest.fixture(scope="module")
def merged(adapter, tmp_path_factory):
    return merge(MergeOptions(model_path=str(adapter), output_dir=str(tmp_path_factory.mktemp("m") / "merged")))


def test_adapter_changes_the_model(adapter, features):
    """Otherwise merged == adapter would hold trivially."""
    base, _ = load_model("bundled:tiny.en")
    with_adapter, _ = load_model(str(adapter))
    tokens = torch.tensor([[base.config.decoder_start_token_id, 50362]])
    with torch.no_grad():
        a = base(input_features=features[:1], decoder_input_ids=tokens).logits
        b = with_adapter(input_features=features[:1], decoder_input_ids=tokens).logits
    assert (a - b).abs().max() > 1e-2


def test_merged_transcripts_equal_adapter(merged, adapter_ids, features):
    assert (merged / "model.safetensors").is_file()
    assert not (merged / "adapter_config.json").exists()  # a plain model now, no peft needed
    assert (merged / "preprocessor_config.json").is_file()
    gen = json.loads((merged / "generation_config.json").read_text())
    assert gen["no_timestamps_token_id"] == 50362 and gen["alignment_heads"]
    assert json.loads((merged / "merge_info.json").read_text())["base_model"] == "bundled:tiny.en"
    model, _ = load_model(str(merged))
    assert type(model).__name__ == "WhisperForConditionalGeneration"
    assert greedy_ids(model, features) == adapter_ids
    assert all(len(ids) > 3 for ids in adapter_ids)  # real transcripts, not empty output


def test_merge_refuses_nan_adapter(adapter, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in adapter.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(broken / "adapter_model.safetensors")
    name = next(k for k in weights if "lora_B" in k)
    weights[name][0, 0] = float("nan")
    save_file(weights, broken / "adapter_model.safetensors")
    out = tmp_path / "merged"
    with pytest.raises(WhisperLoraError, match="NaN"):
        merge(MergeOptions(model_path=str(broken), output_dir=str(out), verify=False))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_merge_options_are_checked(adapter, merged, tmp_path):
    with pytest.raises(OptionsError, match="adapter_config.json"):
        MergeOptions(model_path=str(merged), output_dir=str(tmp_path / "x"))
    with pytest.raises(OptionsError, match="not empty"):
        MergeOptions(model_path=str(adapter), output_dir=str(merged))
    with pytest.raises(OptionsError, match="no such folder"):
        MergeOptions(model_path=str(tmp_path / "missing"), output_dir=str(tmp_path / "x"))


def test_export_options_are_checked(adapter):
    with pytest.raises(OptionsError, match="--quantization"):
        ExportOptions(model_path=str(adapter), quantization="int4")
    with pytest.raises(OptionsError, match="--format"):
        ExportOptions(model_path=str(adapter), format="onnx")


def ct2_ids(folder, features, compute_type) -> list[list[int]]:
    """Greedy decode with CTranslate2 on the very features HF saw, same prompt, no timestamps."""
    import ctranslate2

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type, intra_threads=2)
    storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))
    prompt = [50257, 50362]  # <|startoftranscript|><|notimestamps|> of the English-only vocabulary
    results = model.generate(storage, [prompt] * len(features), beam_size=1, max_length=448)
    return [r.sequences_ids[0] for r in results]


def test_export_from_adapter_float32_matches_hf(adapter, adapter_ids, features, tmp_path, english_clips):
    out = export(ExportOptions(model_path=str(adapter), output_dir=str(tmp_path / "ct2"), quantization="float32"))
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.json"):
        assert (out / name).is_file(), name
    assert ct2_ids(out, features, "float32") == adapter_ids

    from faster_whisper import WhisperModel

    fw = WhisperModel(str(out), device="cpu", compute_type="float32", cpu_threads=2)
    assert fw.feature_extractor.mel_filters.shape[0] == 80 and not fw.model.is_multilingual
    # faster-whisper's own tokenizer decodes our tokens to the same text as HF's
    _, processor = load_model(str(adapter))
    for ids in adapter_ids:
        assert fw.hf_tokenizer.decode(ids) == processor.tokenizer.decode(ids)
    segments, _ = fw.transcribe(str(english_clips[0][0]), beam_size=1, temperature=0.0, language="en",
                                without_timestamps=True, condition_on_previous_text=False)
    assert "".join(s.text for s in segments).strip()


def test_export_merged_int8(merged, adapter_ids, features, tmp_path):
    out = export(ExportOptions(model_path=str(merged), output_dir=str(tmp_path / "ct2"), quantization="int8"))
    assert (out / "model.bin").stat().st_size < 0.5 * (merged / "model.safetensors").stat().st_size
    ids = ct2_ids(out, features, "int8")
    # int8 rounds every weight: the transcripts must stay close, not bit-identical
    from whisper_lora.scoring.metrics import error_rates

    _, processor = load_model(str(merged))
    refs = processor.tokenizer.batch_decode(adapter_ids)
    hyps = processor.tokenizer.batch_decode(ids)
    assert error_rates(refs, hyps, "en").wer <= 0.2


def test_cli_reports_option_errors(merged, tmp_path, capsys):
    from whisper_lora.cli import main

    assert main(["merge", "--model_path", str(merged), "--output_dir", str(tmp_path / "x")]) == 1
    assert "adapter_config.json" in capsys.readouterr().err
    assert main(["export", "--model_path", str(merged), "--output_dir", str(merged)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_export_default_output_dir(adapter):
    options = ExportOptions(model_path=str(adapter), quantization="int8")
    assert options.target() == adapter.parent / "output-ct2-int8"
