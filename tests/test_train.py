"""Fine-tuning end to end (train.py, training/options.py, the CLI and whisper_lora_finetune.py);
the output folder's own tests are in test_training_output_dir.py.

Fast tests train the tiny random model saved as a local model folder; one slow test fine-tunes
the real tiny.en and checks that timestamps still work afterwards."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from whisper_lora.errors import ManifestError, OptionsError
from whisper_lora.training.options import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "whisper_lora_finetune.py"
# One thread per run: the tiny model gains nothing from more, and on a busy machine torch's
# spinning worker threads make a run several times slower.
ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def tiny_folder(tiny_random, tmp_path_factory):
    """The tiny random English-only model as a local Hugging Face folder (a model spec)."""
    model, processor = tiny_random
    folder = tmp_path_factory.mktemp("tiny-random")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_multilingual_folder(tiny_random_multilingual, tmp_path_factory):
    model, processor = tiny_random_multilingual
    folder = tmp_path_factory.mktemp("tiny-random-ml")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def manifests(english_clips, tmp_path_factory):
    """train.json (4 clips) and validation.json (2 clips) in the original README's format."""
    folder = tmp_path_factory.mktemp("manifests")
    rows = [{"audio_path": str(p), "text": t} for p, t in english_clips]
    (folder / "train.json").write_text(json.dumps(rows[:4]), encoding="utf-8")
    (folder / "validation.json").write_text(json.dumps(rows[4:6]), encoding="utf-8")
    return folder / "train.json", folder / "validation.json"


def options(manifests, out, **kw):
    train_file, validation_file = manifests
    kw.setdefault("validation_file", str(validation_file))
    return TrainOptions(model_name_or_path="bundled:tiny.en", train_file=str(train_file), output_dir=str(out), **kw)


# --- bad flag values -------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"lora_r": 0}, "--lora_r 0"),
    ({"lora_alpha": 0}, "--lora_alpha"),
    ({"lora_dropout": 1.0}, "--lora_dropout"),
    ({"per_device_train_batch_size": 0}, "--per_device_train_batch_size 0"),
    ({"per_device_eval_batch_size": 0}, "--per_device_eval_batch_size 0"),
    ({"gradient_accumulation_steps": 0}, "--gradient_accumulation_steps 0"),
    ({"learning_rate": 0.0}, "--learning_rate"),
    ({"num_train_epochs": 0}, "--num_train_epochs"),
    ({"max_steps": 0}, "--max_steps 0"),
    ({"warmup_steps": 2.5}, "--warmup_steps"),
    ({"lora_target_modules": ("q_proj", "qkv")}, "--lora_target_modules qkv: unknown"),
    ({"lora_target_modules": ()}, "--lora_target_modules"),
    ({"fp16": True, "bf16": True}, "--fp16, --bf16 and --fp32: give at most one"),
    ({"save_steps": 500, "eval_steps": 300}, "multiple of --eval_steps"),
    ({"max_duration_in_seconds": 40}, "--max_duration_in_seconds 40"),
    ({"min_duration_in_seconds": 31}, "--min_duration_in_seconds"),
    ({"max_label_length": 500}, "--max_label_length 500"),
    ({"task": "summarize"}, "--task"),
    ({"language": "klingon"}, "--language 'klingon'"),
    ({"timestamp_share": 1.5}, "--timestamp_share"),
    ({"max_train_samples": 0}, "--max_train_samples"),
    ({"num_workers": -1}, "--num_workers"),
    ({"logging_steps": 0}, "--logging_steps"),
    ({"generation_max_length": 1000}, "--generation_max_length"),
    ({"lr_scheduler_type": "sometimes"}, "--lr_scheduler_type"),
])
def test_bad_flag_values(manifests, tmp_path, changes, message):
    with pytest.raises(OptionsError, match=message.replace("(", r"\(")):
        options(manifests, tmp_path / "out", **changes)


def test_missing_files(manifests, tmp_path):
    with pytest.raises(OptionsError, match="--train_file .*no such file"):
        TrainOptions("bundled:tiny.en", str(tmp_path / "nope.json"), str(tmp_path / "out"))
    with pytest.raises(OptionsError, match="--validation_file .*no such file"):
        options(manifests, tmp_path / "out", validation_file=str(tmp_path / "nope.json"))


def test_bad_resume_values(manifests, tmp_path):
    (tmp_path / "out" / "checkpoint-5").mkdir(parents=True)  # cut short: no trainer_state.json
    with pytest.raises(OptionsError, match="not a complete checkpoint"):
        options(manifests, tmp_path / "out", resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-5"))


def test_options_that_need_a_multilingual_model(manifests, tmp_path):
    with pytest.raises(OptionsError, match="English-only"):
        options(manifests, tmp_path / "o", language="zh").check_for_model(multilingual=False)
    with pytest.raises(OptionsError, match="cannot translate"):
        options(manifests, tmp_path / "o", task="translate").check_for_model(multilingual=False)
    options(manifests, tmp_path / "o", language="zh", task="translate").check_for_model(multilingual=True)


def test_fp16_without_gpu_falls_back_with_a_warning(manifests, tmp_path, caplog):
    opts = options(manifests, tmp_path / "o", fp16=True)
    with caplog.at_level(logging.WARNING):
        assert opts.precision(cuda=False, cpu_bf16=False) == "fp32"
    assert "--fp16 needs a CUDA GPU" in caplog.text
    assert opts.precision(cuda=True, cpu_bf16=False) == "fp16"
    with caplog.at_level(logging.WARNING):
        assert options(manifests, tmp_path / "o", bf16=True).precision(cuda=False, cpu_bf16=False) == "bf16"
    assert "emulated" in caplog.text


def test_default_precision_is_bf16_only_where_the_cpu_multiplies_bf16(manifests, tmp_path):
    """Both paths the default takes, whichever CPU runs the test: bf16 autocast on a CPU with
    AVX512-BF16/AMX (1.65x faster steps), fp32 where bf16 is emulated and on a GPU unless asked."""
    default = options(manifests, tmp_path / "o")
    assert default.precision(cuda=False, cpu_bf16=True) == "bf16"
    assert default.precision(cuda=False, cpu_bf16=False) == "fp32"
    assert default.precision(cuda=True, cpu_bf16=True) == "fp32"
    assert options(manifests, tmp_path / "o", fp32=True).precision(cuda=False, cpu_bf16=True) == "fp32"
    with pytest.raises(OptionsError, match="at most one"):
        options(manifests, tmp_path / "o", fp32=True, bf16=True)


def test_training_on_an_adapter_folder_is_refused(manifests, tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    from whisper_lora.train import train

    with pytest.raises(OptionsError, match="merge it first"):
        train(TrainOptions(str(tmp_path / "adapter"), str(manifests[0]), str(tmp_path / "out")))


def test_readme_commands_parse(manifests, tmp_path):
    """Both commands of the original README, as written (with a bundled model), give these options."""
    from whisper_lora.cli import build_parser
    from whisper_lora.cli.train import options_from_args

    train_file, validation_file = manifests
    common = ["--model_name_or_path", "bundled:tiny.en", "--train_file", str(train_file),
              "--validation_file", str(validation_file), "--output_dir", str(tmp_path / "output")]
    first = common + ["--num_train_epochs", "3", "--per_device_train_batch_size", "4",
                      "--gradient_accumulation_steps", "2", "--learning_rate", "5e-4", "--warmup_steps", "500",
                      "--logging_steps", "50", "--save_steps", "500", "--eval_steps", "500", "--fp16",
                      "--gradient_checkpointing"]
    opts = options_from_args(build_parser().parse_args(["train"] + first))
    assert (opts.num_train_epochs, opts.per_device_train_batch_size, opts.gradient_accumulation_steps,
            opts.learning_rate, opts.warmup_steps, opts.logging_steps, opts.save_steps, opts.eval_steps,
            opts.fp16, opts.gradient_checkpointing) == (3, 4, 2, 5e-4, 500, 50, 500, 500, True, True)
    second = common + ["--num_train_epochs", "5", "--per_device_train_batch_size", "2",
                       "--gradient_accumulation_steps", "4", "--learning_rate", "1e-4", "--warmup_steps", "1000",
                       "--lora_r", "16", "--lora_alpha", "64", "--lora_dropout", "0.05",
                       "--max_train_samples", "10000", "--max_eval_samples", "1000", "--use_wandb",
                       "--wandb_project", "my-whisper-project", "--cache_dir", str(tmp_path / "cache"),
                       "--lora_target_modules", "q_proj,v_proj", "fc1"]
    opts = options_from_args(build_parser().parse_args(["train"] + second))
    assert (opts.lora_r, opts.lora_alpha, opts.lora_dropout, opts.max_train_samples, opts.max_eval_samples,
            opts.use_wandb, opts.wandb_project, opts.lora_target_modules) == (
        16, 64, 0.05, 10000, 1000, True, "my-whisper-project", ("q_proj", "v_proj", "fc1"))


# --- real runs on the tiny random model ------------------------------------------------------------

def run_script(*args, timeout=600, check=True):
    env = dict(os.environ, **ENV)
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def fast_flags(model, manifests, out, *extra):
    train_file, validation_file = manifests
    return ["--model_name_or_path", model, "--train_file", train_file, "--validation_file", validation_file,
            "--output_dir", out, "--per_device_train_batch_size", "2", "--generation_max_length", "6",
            "--warmup_steps", "0", *extra]


def test_two_step_run_writes_every_output(tiny_folder, tiny_random, manifests, tmp_path):
    out = tmp_path / "output"
    proc = run_script(*fast_flags(tiny_folder, manifests, out, "--max_steps", "2", "--save_steps", "1",
                                  "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
                                  "--fp16", "--use_wandb", "--wandb_project", "test-project",
                                  "--lora_r", "4", "--lora_alpha", "8"))
    log = proc.stdout + proc.stderr
    assert "--fp16 needs a CUDA GPU" in log  # fell back, did not crash
    assert "trainable params" in log
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "generation_config.json", "training_config.json", "metrics.json",
                 "trainer_state.json"):
        assert (out / name).is_file(), name
    from transformers import GenerationConfig, WhisperProcessor

    assert WhisperProcessor.from_pretrained(out).feature_extractor.sampling_rate == 16000
    assert GenerationConfig.from_pretrained(out).no_timestamps_token_id == 50362
    assert list((out / "runs").glob("*/events.out.tfevents.*")), "TensorBoard events under output_dir/runs"
    assert list((out / "wandb").glob("offline-run-*")), "an offline W&B run"
    config = json.loads((out / "training_config.json").read_text())
    assert config["base_model"] == str(Path(tiny_folder).resolve())
    assert config["flags"]["lora_r"] == 4 and config["flags"]["fp16"] is True
    assert config["resolved"]["precision"] == "fp32"
    assert {"torch", "transformers", "peft"} <= set(config["library_versions"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert metrics["baseline"]["step"] == 0 and "eval_wer" in metrics["baseline"]  # before step 0
    assert metrics["best"]["step"] in (1, 2) and "eval_loss" in metrics["best"]
    assert [e["step"] for e in metrics["log_history"] if "eval_wer" in e] == [0, 1, 2]
    # The loss is a mean over the accumulated batches, not their sum (a transformers 5 pitfall
    # with Whisper): at step 1 it is close to the untrained model's validation loss.
    first_loss = next(e["loss"] for e in metrics["log_history"] if "loss" in e)
    assert first_loss == pytest.approx(metrics["baseline"]["eval_loss"], rel=0.2)

    # The saved adapter loads through models.load_model and changes the model's output.
    import torch

    from whisper_lora.models import load_model

    tuned, _ = load_model(str(out))
    base, processor = tiny_random
    features = torch.randn(1, 80, 3000)
    decoder = torch.tensor([[base.config.decoder_start_token_id, 50362]])
    with torch.no_grad():
        before = base(input_features=features, decoder_input_ids=decoder).logits
        after = tuned(input_features=features, decoder_input_ids=decoder).logits
    assert not torch.allclose(before, after, atol=1e-4)
    # Each checkpoint is a loadable output folder too (processor, base model named).
    assert (out / "checkpoint-2" / "training_config.json").is_file()
    from_checkpoint, _ = load_model(str(out / "checkpoint-2"))
    with torch.no_grad():
        last = from_checkpoint(input_features=features, decoder_input_ids=decoder).logits
    assert not torch.allclose(before, last, atol=1e-4)
    merged, _ = load_model(str(out), merge=True)
    with torch.no_grad():
        assert torch.allclose(merged(input_features=features, decoder_input_ids=decoder).logits, after, atol=1e-4)


def test_frozen_encoder_run_reuses_encoder_outputs(tiny_folder, manifests, tmp_path):
    """--freeze_encoder: adapters in the decoder only, each clip encoded once over two epochs."""
    out = tmp_path / "output"
    proc = run_script(*fast_flags(tiny_folder, manifests, out, "--num_train_epochs", "2", "--freeze_encoder",
                                  "--gradient_checkpointing", "--timestamp_share", "0.5"))
    assert "frozen encoder: 4 clips encoded once and reused" in proc.stdout + proc.stderr
    names = list(adapter_weights(out))
    assert names and all(".decoder." in n for n in names)
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 4


def test_frozen_decoder_run_adapts_the_encoder_only(tiny_folder, manifests, tmp_path):
    """--freeze_decoder: adapters in the encoder only, and the resolved regex says so."""
    out = tmp_path / "output"
    run_script(*fast_flags(tiny_folder, manifests, out, "--max_steps", "1", "--freeze_decoder"))
    names = list(adapter_weights(out))
    assert names and all(".encoder." in n for n in names)
    regex = json.loads((out / "training_config.json").read_text())["resolved"]["lora_target_regex"]
    assert regex.startswith(r"(?:model\.(encoder)\.") and "decoder" not in regex


def test_validation_transcripts_are_those_generate_gives_from_the_features(bundled_tiny_en, english_clips, tmp_path):
    """Validation generates from the encoder output of its own loss pass (the encoder runs once
    per window): its tokens must be those of a plain generate() on the same features (real
    tiny.en on real speech, so each clip's transcript depends on its own audio)."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    from whisper_lora.audio import load_audio
    from whisper_lora.training.trainer import WhisperTrainer

    model, processor = bundled_tiny_en
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, generation_max_length=40)
    trainer = WhisperTrainer(model=model, args=args, multilingual=False)
    audio = [load_audio(path) for path, _ in english_clips[:3]]
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    labels = processor.tokenizer([text for _, text in english_clips[:3]], return_tensors="pt", padding=True)
    labels = labels.input_ids.masked_fill(labels.attention_mask == 0, -100)
    loss, tokens, _ = trainer.prediction_step(model.eval(), {"input_features": features, "labels": labels},
                                              prediction_loss_only=False)
    with torch.no_grad():
        expected = model.generate(input_features=features, max_length=40)
    assert torch.isfinite(loss)
    texts = processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    assert len(set(texts)) == 3  # three clips, three different transcripts
    assert torch.equal(tokens, expected)


def test_multilingual_run_saves_language_and_task(tiny_multilingual_folder, manifests, tmp_path):
    """Multilingual model: per-row languages (a row's own wins) in training and in validation
    generation, task and timestamps, and a generation config that carries language and task."""
    validation = json.loads(Path(manifests[1]).read_text())
    validation[1]["language"] = "fr"
    validation_file = tmp_path / "validation.json"
    validation_file.write_text(json.dumps(validation))
    out = tmp_path / "output"
    run_script("--model_name_or_path", tiny_multilingual_folder, "--train_file", manifests[0],
               "--validation_file", validation_file, "--output_dir", out, "--max_steps", "1",
               "--language", "English", "--task", "translate", "--timestamps", "--per_device_train_batch_size", "2",
               "--generation_max_length", "8")
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["language"] == "en" and gen["task"] == "translate"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baseline"] is not None and metrics["best"]["step"] == 1
    config = json.loads((out / "training_config.json").read_text())
    assert config["resolved"]["timestamp_share"] == 1.0 and config["flags"]["language"] == "en"


def test_no_usable_rows_stops_with_a_message(tiny_folder, tmp_path):
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps([{"audio_path": "missing.wav", "text": "hello"}]))
    proc = run_script("--model_name_or_path", tiny_folder, "--train_file", manifest, "--output_dir",
                      tmp_path / "out", check=False)
    assert proc.returncode == 1
    assert "no usable rows" in proc.stderr and "audio file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_output_dir_stops_the_command_before_training(tmp_path, manifests):
    """The train command with a file as --output_dir exits 1 naming --output_dir, without a traceback,
    before any model is loaded (the model spec here does not exist: its error would come first)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out, message in ((blocker, "exists and is not a folder"), (blocker / "out", "cannot write there")):
        proc = run_script("--model_name_or_path", tmp_path / "no-such-model", "--train_file", manifests[0],
                          "--output_dir", out, check=False)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert f"--output_dir {out}: {message}" in proc.stderr and "Traceback" not in proc.stderr


def adapter_weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def test_kill_then_resume_latest(tiny_folder, manifests, tmp_path):
    """kill -9 mid-run, then --resume_from_checkpoint latest: it finishes with the same step count,
    and optimizer, scheduler and data order continue where they were, so the adapter equals an
    uninterrupted run's."""
    flags = ["--max_steps", "12", "--save_steps", "3", "--logging_steps", "1", "--lora_dropout", "0.1",
             "--save_total_limit", "2", "--seed", "3"]
    train_file = manifests[0]
    whole = tmp_path / "whole"
    run_script("--model_name_or_path", tiny_folder, "--train_file", train_file, "--output_dir", whole, *flags)

    cut = tmp_path / "cut"
    env = dict(os.environ, **ENV)
    args = [sys.executable, str(SCRIPT), "--model_name_or_path", str(tiny_folder), "--train_file", str(train_file),
            "--output_dir", str(cut), *flags]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (cut / "checkpoint-3" / "trainer_state.json").is_file():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(int(p.name.split("-")[1]) for p in cut.glob("checkpoint-*"))
    assert killed_at < 12 and not (cut / "adapter_model.safetensors").exists()

    resumed = run_script("--model_name_or_path", tiny_folder, "--train_file", train_file, "--output_dir", cut,
                         *flags, "--resume_from_checkpoint", "latest")
    assert "resuming from" in resumed.stderr
    state = json.loads((cut / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    whole_state = json.loads((whole / "trainer_state.json").read_text())
    lr = {e["step"]: e["learning_rate"] for e in whole_state["log_history"] if "learning_rate" in e}
    for entry in state["log_history"]:
        if "learning_rate" in entry:  # the scheduler continued: same rate at the same step
            assert entry["learning_rate"] == pytest.approx(lr[entry["step"]])
    a, b = adapter_weights(whole), adapter_weights(cut)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)


def test_torchrun_two_processes(tiny_folder, manifests, tmp_path):
    """The same script under torchrun with 2 CPU processes (gloo): trains, and only rank 0 writes."""
    out = tmp_path / "output"
    env = dict(os.environ, **ENV)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
           *map(str, fast_flags(tiny_folder, manifests, out, "--max_steps", "2", "--save_steps", "2",
                                "--per_device_eval_batch_size", "1"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (out / "adapter_model.safetensors").is_file()
    config = json.loads((out / "training_config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert len(list((out / "runs").glob("*/events.out.tfevents.*"))) == 1  # rank 0 only
    assert proc.stdout.count("trainable params") + proc.stderr.count("trainable params") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    # 4 clips, 2 per process per step: one step is one pass over the data.
    assert metrics["global_step"] == 2 and metrics["train"]["epoch"] == pytest.approx(2.0)
    assert metrics["processes"] == 2 and metrics["distributed"] == "MULTI_CPU"  # gradients synchronised
    assert metrics["baseline"]["eval_utterances"] == 2  # each process's validation clip, gathered


def test_strict_flag_fails_on_a_bad_row(tiny_folder, manifests, tmp_path):
    rows = json.loads(Path(manifests[0]).read_text()) + [{"audio_path": "gone.wav", "text": "x"}]
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps(rows))
    from whisper_lora.train import train

    with pytest.raises(ManifestError, match="strict"):
        train(TrainOptions(str(tiny_folder), str(manifest), str(tmp_path / "out"), strict=True))


def test_callbacks_watch_the_run(tiny_folder, manifests, tmp_path):
    """train(options, callbacks=[...]) adds them to the real trainer (benchmarks/gpu_train.py times
    steps with one): they see every step."""
    from transformers import TrainerCallback

    from whisper_lora.train import train

    class Steps(TrainerCallback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    steps = Steps()
    result = train(TrainOptions(str(tiny_folder), str(manifests[0]), str(tmp_path / "out"), max_steps=2,
                                per_device_train_batch_size=2, save_steps=2, warmup_steps=0), callbacks=[steps])
    assert steps.seen == [1, 2] and result.global_step == 2


@pytest.mark.slow
def test_real_tiny_en_keeps_timestamps_after_fine_tuning(say, english_clips, tmp_path):
    """bundled tiny.en fine-tuned without --timestamps, then loaded from its output folder:
    two utterances joined by a pause still come out as two segments with increasing times."""
    import torch

    from whisper_lora.audio import load_audio
    from whisper_lora.models import load_model

    train_file = tmp_path / "train.json"
    train_file.write_text(json.dumps([{"audio_path": str(p), "text": t} for p, t in english_clips[:4]]))
    out = tmp_path / "output"
    run_script("--model_name_or_path", "bundled:tiny.en", "--train_file", train_file, "--output_dir", out,
               "--max_steps", "8", "--per_device_train_batch_size", "2")
    model, processor = load_model(str(out))
    first, second = english_clips[4], english_clips[5]
    audio = np.concatenate([load_audio(first[0]), np.zeros(8000, np.float32), load_audio(second[0])])
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        tokens = model.generate(input_features=features, return_timestamps=True, max_new_tokens=100)
    offsets = processor.tokenizer.decode(tokens[0], output_offsets=True)["offsets"]
    times = [o["timestamp"] for o in offsets]
    assert len(times) >= 2, offsets
    assert all(start < end <= len(audio) / 16000 + 0.5 for start, end in times), times
    assert all(b[0] >= a[1] for a, b in zip(times, times[1:])), times
    assert "window" in " ".join(o["text"] for o in offsets).lower()  # the second sentence is there


def test_out_of_memory_advice_names_the_fixes(manifests, tmp_path):
    from whisper_lora.train import out_of_memory_advice

    opts = options(manifests, tmp_path / "out", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    advice = out_of_memory_advice(opts)
    assert "--per_device_train_batch_size 2 --gradient_accumulation_steps 4" in advice
    assert "--gradient_checkpointing" in advice and "--fp16" in advice and "smaller model" in advice
    assert "--gradient_checkpointing" not in out_of_memory_advice(opts.replace(gradient_checkpointing=True))


def test_adalora_run_fixes_its_ranks_at_the_planned_step_and_loads_back(tiny_folder, manifests, english_clips,
                                                                        tmp_path):
    """--use_adalora: the rank schedule is laid over the steps the Trainer really takes (4 clips,
    batch 2, 3 epochs: 6), so the budget is moved and the final ranks are saved with the adapter;
    the output folder then loads and transcribes like any other."""
    from whisper_lora.models import load_model
    from whisper_lora.transcribe import TranscribeOptions, transcribe

    out = tmp_path / "output"
    run_script(*fast_flags(tiny_folder, manifests, out, "--num_train_epochs", "3", "--use_adalora",
                           "--lora_r", "8", "--adalora_target_r", "2", "--save_steps", "6"))
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 6
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "ADALORA" and config["total_step"] == 6 and config["init_r"] == 8
    ranks = config["rank_pattern"]  # layer -> which of its 8 ranks are kept: set at the final phase
    assert ranks and all(len(kept) == 8 for kept in ranks.values())
    assert sum(map(sum, ranks.values())) < 8 * len(ranks)  # the budget was cut, not left at init_r
    model, _ = load_model(str(out))
    assert type(model).__name__ == "PeftModel" and model.peft_config["default"].rank_pattern == ranks
    summary = transcribe(str(out), [str(english_clips[0][0])], TranscribeOptions(), echo=False, progress=False)
    assert not summary.failed


def test_adalora_options_refused_with_dora_and_without_the_flag(manifests, tmp_path):
    with pytest.raises(OptionsError, match="--use_adalora with --use_dora"):
        options(manifests, tmp_path, use_adalora=True, use_dora=True)
    with pytest.raises(OptionsError, match="--adalora_target_r goes with --use_adalora"):
        options(manifests, tmp_path, adalora_target_r=4)
    with pytest.raises(OptionsError, match="--adalora_target_r 64: .* between 1 and --lora_r"):
        options(manifests, tmp_path, use_adalora=True, adalora_target_r=64)
