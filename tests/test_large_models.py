"""large-v3 and large-v3-turbo (128 mel bins, 100 languages in 51866 tokens, turbo's 4 decoder
layers) along every load path, in training and in transcription; --load_in_8bit / --load_in_4bit
refused clearly where bitsandbytes cannot run; gradient checkpointing exact with LoRA.

The models are tiny random ones built from large-v3-shaped configs (testing.random_model), written
as openai-whisper writes its `.pt` files and as CTranslate2 folders, then loaded through load_model.
Token ids are checked against openai/whisper-large-v3's own tokenizer and generation_config.json
(written out below), not against what our converter derives them from."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from whisper_lora import load_model
from whisper_lora.errors import OptionsError
from whisper_lora.models.testing import LARGE_V3, LARGE_V3_TURBO, random_model, save_openai_checkpoint
from whisper_lora.training.options import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=256, decoder_ffn_dim=256)
SHAPES = {"large-v3": {**LARGE_V3, **TINY},
          "turbo": {**LARGE_V3_TURBO, **TINY, "encoder_layers": 4, "decoder_layers": 1}}  # fewer decoder layers

# openai/whisper-large-v3 on the hub: tokenizer ids, and its generation_config.json.
LARGE_V3_IDS = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|su|>": 50357,
                "<|yue|>": 50358, "<|translate|>": 50359, "<|transcribe|>": 50360, "<|startoflm|>": 50361,
                "<|startofprev|>": 50362, "<|nospeech|>": 50363, "<|notimestamps|>": 50364, "<|0.00|>": 50365,
                "<|30.00|>": 51865}
SUPPRESS_TAIL = [49870, 50254, 50258, 50359, 50360, 50361, 50362, 50363]  # the last of its 88 suppress_tokens
HUB_HEADS = {"large-v3": [[7, 0], [10, 17], [12, 18], [13, 12], [16, 1], [17, 14], [19, 11], [21, 4], [24, 1],
                          [25, 6]],
             "turbo": [[2, 4], [2, 11], [3, 3], [3, 6], [3, 11], [3, 14]]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def originals():
    return {kind: random_model(shape, seed=i) for i, (kind, shape) in enumerate(SHAPES.items())}


@pytest.fixture(scope="module")
def checkpoints(originals, tmp_path_factory):
    """{kind: path of an openai-whisper .pt}."""
    folder = tmp_path_factory.mktemp("pt")
    paths = {}
    for kind, (model, _) in originals.items():
        paths[kind] = folder / f"{kind}.pt"
        save_openai_checkpoint(model, paths[kind])
    return paths


@pytest.fixture(scope="module")
def ct2_folders(checkpoints, cache, tmp_path_factory):
    """{kind: a CTranslate2 folder}, exported from the .pt by `whisper-lora export`'s code."""
    from whisper_lora.export import ExportOptions, export

    folder = tmp_path_factory.mktemp("ct2")
    return {kind: export(ExportOptions(model_path=str(pt), output_dir=str(folder / kind), quantization="float32",
                                       cache_dir=str(cache)))
            for kind, pt in checkpoints.items()}


def _spec(kind, source, checkpoints, ct2_folders):
    return str(checkpoints[kind] if source == "pt" else ct2_folders[kind])


# ---- loading: .pt and CTranslate2 ----------------------------------------------------------------

@pytest.mark.parametrize("source", ["pt", "ct2"])
@pytest.mark.parametrize("kind", list(SHAPES))
def test_loads_with_large_v3s_input_tokens_and_weights(kind, source, originals, checkpoints, ct2_folders, cache):
    from whisper_lora.tokens import Tokens

    model, processor = load_model(_spec(kind, source, checkpoints, ct2_folders), cache_dir=cache)
    config, gen, tokenizer = model.config, model.generation_config, processor.tokenizer
    shape = SHAPES[kind]
    assert (config.num_mel_bins, config.vocab_size) == (128, 51866)
    assert (config.encoder_layers, config.decoder_layers) == (shape["encoder_layers"], shape["decoder_layers"])
    assert len(tokenizer) == 51866
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in LARGE_V3_IDS} == LARGE_V3_IDS
    assert len(gen.lang_to_id) == 100 and gen.lang_to_id["<|yue|>"] == 50358 and gen.lang_to_id["<|en|>"] == 50259
    assert gen.task_to_id == {"transcribe": 50360, "translate": 50359}
    assert (gen.no_timestamps_token_id, gen.prev_sot_token_id, gen.decoder_start_token_id) == (50364, 50362, 50258)
    assert len(gen.suppress_tokens) == 88 and gen.suppress_tokens[-8:] == SUPPRESS_TAIL
    assert gen.begin_suppress_tokens == [220, 50257]
    layers = shape["decoder_layers"]
    assert gen.alignment_heads == [[layer, h] for layer in range(layers // 2, layers) for h in range(4)]
    # The prefix training puts before every label, and text in and out of the tokenizer.
    assert Tokens.of(model).prefix("yue", "transcribe", timestamps=False) == [50258, 50358, 50360, 50364]
    assert tokenizer.decode([50258, 50358, 50360, 50364]) == "<|startoftranscript|><|yue|><|transcribe|><|notimestamps|>"
    ids = tokenizer("今日天氣好好", add_special_tokens=False).input_ids
    assert max(ids) < 50257 and tokenizer.decode(ids) == "今日天氣好好"
    features = processor.feature_extractor(np.zeros(16000, np.float32), sampling_rate=16000,
                                           return_tensors="pt").input_features
    assert features.shape == (1, 128, 3000)
    original = originals[kind][0].state_dict()
    for name, value in model.state_dict().items():
        assert torch.allclose(value, original[name]), name


def test_alignment_heads_of_released_shapes():
    from whisper_lora.models.openai_heads import openai_alignment_heads

    assert openai_alignment_heads(51866, 32, 32, 1280, 20) == HUB_HEADS["large-v3"]
    assert openai_alignment_heads(51866, 32, 4, 1280, 20) == HUB_HEADS["turbo"]
    assert openai_alignment_heads(51865, 6, 6, 512, 8) == [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4],
                                                          [5, 6]]  # base, as the bundled model's config has them
    assert openai_alignment_heads(51865, 32, 32, 1280, 20) is None  # large-v1 or v2: they differ, so neither
    assert openai_alignment_heads(51866, 2, 2, 64, 4) is None


def test_a_released_shape_converts_with_openais_alignment_heads(tmp_path):
    """A .pt shaped like openai's multilingual tiny (random weights) gets tiny's heads from
    openai's table, not the default upper half."""
    model, _ = random_model(dict(vocab_size=51865, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4,
                                 encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
                                 decoder_ffn_dim=1536, max_source_positions=1500, max_target_positions=448))
    path = tmp_path / "tiny.pt"
    save_openai_checkpoint(model, path)
    del model
    loaded, processor = load_model(str(path), cache_dir=tmp_path / "c")
    assert loaded.generation_config.alignment_heads == [[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]
    assert processor.feature_extractor.feature_size == 80 and len(processor.tokenizer) == 51865
    assert processor.tokenizer.convert_tokens_to_ids("<|transcribe|>") == 50359  # 99 languages: nothing moved


def test_unknown_vocabulary_size_names_the_file(checkpoints, tmp_path):
    from whisper_lora.errors import ModelLoadError

    checkpoint = torch.load(checkpoints["large-v3"], weights_only=True)
    checkpoint["dims"]["n_vocab"] = 51870
    path = tmp_path / "odd.pt"
    torch.save(checkpoint, path)
    with pytest.raises(ModelLoadError, match="odd.pt: vocabulary of 51870 tokens"):
        load_model(str(path), cache_dir=tmp_path / "c")


def test_cantonese_is_added_once():
    from whisper_lora.models.bundled import locate
    from whisper_lora.models.vocabulary import with_cantonese

    folder, _ = locate("base")
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    once = with_cantonese(tokenizer_json, ct2_config)
    assert with_cantonese(*once) == once
    assert len(once[1]["lang_ids"]) == 100 and len(ct2_config["lang_ids"]) == 99  # the input is left as it was


# ---- training and transcription ------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest(say, tmp_path_factory):
    """Two Cantonese and two English clips, each row naming its language."""
    rows = [{"audio_path": str(say(text, voice="yue")), "text": text, "language": "yue"}
            for text in ("今日天氣好好。", "我哋聽日去飲茶。")]
    rows += [{"audio_path": str(say(text)), "text": text, "language": "en"}
             for text in ("The weather is very nice today.", "I would like a cup of coffee.")]
    path = tmp_path_factory.mktemp("manifest") / "train.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(checkpoints, manifest, cache, tmp_path_factory):
    """{kind: training output folder}: two packed steps on the .pt of each shape."""
    from whisper_lora.train import train

    outputs = {}
    for kind, pt in checkpoints.items():
        out = tmp_path_factory.mktemp(f"trained-{kind}")
        result = train(TrainOptions(str(pt), str(manifest), str(out), cache_dir=str(cache), max_steps=2,
                                    per_device_train_batch_size=2, warmup_steps=0, save_steps=2, lora_r=4,
                                    lora_alpha=8))
        assert result.global_step == 2
        outputs[kind] = out
    return outputs


@pytest.mark.parametrize("kind", list(SHAPES))
def test_training_and_transcribing_with_128_mel_bins(kind, trained, manifest, cache, tmp_path):
    from whisper_lora.decoding.options import TranscribeOptions
    from whisper_lora.export import ExportOptions, export
    from whisper_lora.transcribe import Transcriber

    out = trained[kind]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(np.isfinite(e["loss"]) for e in history if "loss" in e)
    model, processor = load_model(str(out), cache_dir=cache)
    assert processor.feature_extractor.feature_size == 128 and model.config.num_mel_bins == 128
    assert model.generation_config.lang_to_id["<|yue|>"] == 50358
    audio = [row["audio_path"] for row in json.loads(manifest.read_text(encoding="utf-8"))]
    fast = dict(temperatures=(0.0,), max_new_tokens=6, precision="fp32", cache_dir=str(cache))
    hf = Transcriber.from_spec(str(out), TranscribeOptions(language="yue", **fast))
    result = next(hf.transcribe_files(audio[:1]))
    assert result.error is None and result.language == "yue"

    # The adapter merged and exported for faster-whisper keeps the 128 bins, and decodes.
    ct2 = export(ExportOptions(model_path=str(out), output_dir=str(tmp_path / "ct2"), quantization="float32",
                               cache_dir=str(cache)))
    assert json.loads((ct2 / "preprocessor_config.json").read_text())["feature_size"] == 128
    fw = Transcriber.from_spec(str(ct2), TranscribeOptions(language="yue", backend="ct2", **fast))
    result = next(fw.transcribe_files(audio[:1]))
    assert result.error is None and result.language == "yue"


# ---- --load_in_8bit / --load_in_4bit on a machine where bitsandbytes cannot run -----------------

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")


@needs_no_gpu
@pytest.mark.parametrize("flag", ["load_in_8bit", "load_in_4bit"])
def test_kbit_without_a_gpu_is_refused_before_model_or_data(flag, tmp_path):
    """Neither the model nor the manifest is read: the spec names a hub model that cannot be
    fetched here and the manifest is not JSON, so reading either would fail differently."""
    from whisper_lora.train import train

    manifest = tmp_path / "train.json"
    manifest.write_text("not json", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(OptionsError) as err:
        train(TrainOptions("openai/whisper-large-v3", str(manifest), str(out), **{flag: True}))
    message = str(err.value)
    assert message.startswith(f"--{flag}: ") and "CUDA GPU" in message
    if not HAS_BNB:
        assert "pip install 'whisper-lora[kbit]'" in message
    assert list(out.iterdir()) == []  # the empty folder writable_output_dir made, nothing more
    assert manifest.read_text(encoding="utf-8") == "not json"


@pytest.mark.skipif(HAS_BNB, reason="checks the message for a missing bitsandbytes")
def test_kbit_on_a_gpu_without_bitsandbytes_says_how_to_install(tmp_path):
    from whisper_lora.training.kbit import check_kbit

    manifest = tmp_path / "train.json"
    manifest.write_text("[]", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"--load_in_4bit: bitsandbytes is not installed: "
                                           r"pip install 'whisper-lora\[kbit\]' \(it needs a CUDA GPU\)"):
        check_kbit(TrainOptions("m", str(manifest), str(tmp_path), load_in_4bit=True), cuda=True)


def test_kbit_options(tmp_path):
    from whisper_lora.train import out_of_memory_advice
    from whisper_lora.training.kbit import kbit_precision, quantization_config

    manifest = tmp_path / "train.json"
    manifest.write_text("[]", encoding="utf-8")

    def opts(**kw):
        return TrainOptions("m", str(manifest), str(tmp_path), **kw)

    with pytest.raises(OptionsError, match="--load_in_8bit and --load_in_4bit both given"):
        opts(load_in_8bit=True, load_in_4bit=True)
    with pytest.raises(OptionsError, match="--fp32 with --load_in_4bit: quantized layers compute in bf16 or fp16"):
        opts(load_in_4bit=True, fp32=True)
    four = opts(load_in_4bit=True)
    assert kbit_precision(four, bf16_supported=True) == "bf16"
    assert kbit_precision(four, bf16_supported=False) == "fp16"  # before Ampere
    assert kbit_precision(opts(load_in_4bit=True, fp16=True), bf16_supported=True) == "fp16"
    config = quantization_config(four, "bf16")
    assert config.load_in_4bit and not config.load_in_8bit
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant, config.bnb_4bit_compute_dtype) == (
        "nf4", True, torch.bfloat16)
    assert quantization_config(opts(load_in_4bit=True), "fp16").bnb_4bit_compute_dtype == torch.float16
    assert quantization_config(opts(load_in_8bit=True), "bf16").load_in_8bit
    assert "--load_in_8bit or --load_in_4bit" in out_of_memory_advice(opts())
    assert "--load_in_8bit" not in out_of_memory_advice(four)


def test_kbit_flags_on_both_commands(tmp_path):
    from whisper_lora.cli import build_parser
    from whisper_lora.cli.train import options_from_args

    manifest = tmp_path / "train.json"
    manifest.write_text("[]", encoding="utf-8")
    common = ["--model_name_or_path", "m", "--train_file", str(manifest), "--output_dir", str(tmp_path / "o")]
    assert options_from_args(build_parser().parse_args(["train", *common, "--load_in_4bit"])).load_in_4bit
    assert options_from_args(build_parser().parse_args(["train", *common, "--load_in_8bit"])).load_in_8bit
    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(ROOT / "whisper_lora_finetune.py"), *common, "--load_in_8bit"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "error: --load_in_8bit: " in proc.stderr, proc.stderr[-2000:]


# ---- gradient checkpointing with LoRA --------------------------------------------------------------

class Gradients(TrainerCallback):
    """Keeps the trainable parameters' gradients just before the optimizer step."""

    grads: dict = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: None if p.grad is None else p.grad.detach().clone()
                      for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
@pytest.mark.parametrize("pack", [True, False], ids=["packed", "one-clip-per-window"])
def test_gradient_checkpointing_gives_the_same_lora_gradients(pack, reentrant, checkpoints, manifest, cache, tmp_path,
                                                              monkeypatch):
    """One fp32 step on the large-v3-shaped model: the adapters' gradients with
    --gradient_checkpointing equal those without, in the encoder too (where frozen convolutions
    feed the first checkpointed layer). The reentrant kind, which the Trainer is not asked for,
    must come out right as well: another launcher may pick it."""
    from whisper_lora.train import train
    from whisper_lora.training import trainer

    if reentrant:
        chosen = trainer._checkpointing_args
        monkeypatch.setattr(trainer, "_checkpointing_args", lambda enabled: {
            k: ({"use_reentrant": True} if k.endswith("_kwargs") else v) for k, v in chosen(enabled).items()})

    def step(checkpointing: bool) -> dict:
        keep = Gradients()
        train(TrainOptions(str(checkpoints["large-v3"]), str(manifest), str(tmp_path / f"gc-{checkpointing}"),
                           cache_dir=str(cache), max_steps=1, per_device_train_batch_size=4, lora_dropout=0.0,
                           lora_r=4, lora_alpha=8, warmup_steps=0, save_steps=10, pack_clips=pack, fp32=True,
                           gradient_checkpointing=checkpointing), callbacks=[keep])
        return keep.grads

    plain, checkpointed = step(False), step(True)
    assert plain.keys() == checkpointed.keys() and plain
    # Equal up to float32 rounding (recomputation may sum in another order), which matters only
    # for gradients far below the largest (k_proj's are near zero): a lost or wrong one is off by all of it.
    scale = max(g.abs().max() for g in plain.values())
    for name, grad in plain.items():
        assert checkpointed[name] is not None, name
        assert torch.allclose(grad, checkpointed[name], rtol=1e-3, atol=1e-4 * scale), name
    # lora_B starts at zero, so only its gradients are non-zero at the first step.
    for stack in ("encoder", "decoder"):
        grads = [g for n, g in checkpointed.items() if f".{stack}." in n and "lora_B" in n]
        assert grads and all(g.abs().sum() > 0 for g in grads), stack
