"""The HF side of a converted model besides its weights: the WhisperProcessor (tokenizer and
feature extractor) and the generation config, built from a faster-whisper folder's tokenizer.json
and config.json.

Both converters use it: ct2_to_hf.py on the folder being converted, openai_to_hf.py on the bundled
folder of the same vocabulary, or large-v3's derived from it (vocabulary.py: an openai-whisper .pt
holds no tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

from ..tokens import N_TIMESTAMPS, TIME_PRECISION


def _special_ids(tokenizer_json: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}


# English-only checkpoints have 51864 tokens; multilingual ones 51865 and more (large-v3: 51866).
MULTILINGUAL_MIN_VOCAB = 51865


def token_facts(folder: Path, ct2_config: dict, vocab_size: int) -> dict:
    """Special token ids, languages and suppress lists from tokenizer.json and config.json."""
    specials = _special_ids(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
    by_id = {v: k for k, v in specials.items()}
    langs = {by_id[i]: i for i in ct2_config.get("lang_ids", []) if i in by_id}
    facts = dict(specials)
    facts.update(
        # tokenizer.json of English-only models lists the language tokens too, so the
        # vocabulary size is what tells them apart.
        multilingual=vocab_size >= MULTILINGUAL_MIN_VOCAB,
        lang_to_id=langs,
        suppress=list(ct2_config.get("suppress_ids", [])),
        suppress_begin=list(ct2_config.get("suppress_ids_begin", [])),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
    )
    return facts


def generation_config(config, tokens: dict):
    """The generation config HF's Whisper generate() needs for language, task and timestamps."""
    from transformers import GenerationConfig

    no_ts = tokens["<|notimestamps|>"]
    gc = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=tokens["suppress"],
        begin_suppress_tokens=tokens["suppress_begin"],
        alignment_heads=tokens["alignment_heads"],
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=tokens["<|startofprev|>"],
        max_initial_timestamp_index=50,  # openai/whisper: the first timestamp is at most 1.00 s
        return_timestamps=False,
        is_multilingual=tokens["multilingual"],
    )
    if tokens["multilingual"]:
        gc.lang_to_id = tokens["lang_to_id"]
        gc.task_to_id = {"transcribe": tokens["<|transcribe|>"], "translate": tokens["<|translate|>"]}
    return gc


def build_processor(folder: Path, n_mels: int):
    """WhisperProcessor from a CT2 folder's tokenizer.json, with the 1501 timestamp tokens added."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    # As in OpenAI's own HF tokenizers: <|endoftext|> is unk, bos, eos and pad, so recipes that pad
    # labels with tokenizer.pad (the HF blog's collator) work.
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(tokenizer_file=str(folder / "tokenizer.json"), unk_token=end, bos_token=end,
                                 eos_token=end, pad_token=end)
    # Whisper's tokenizer finds the first timestamp id as "last special id + 1", so every
    # special token (sot, languages, tasks, notimestamps) must be registered, in id order.
    added = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"]) if t["special"]]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    timestamps = [AddedToken(f"<|{i * TIME_PRECISION:.2f}|>", lstrip=False, rstrip=False,
                             normalized=False, special=False) for i in range(N_TIMESTAMPS)]
    if tokenizer.convert_tokens_to_ids("<|0.00|>") in (None, tokenizer.unk_token_id):
        tokenizer.add_tokens(timestamps)
    features = WhisperFeatureExtractor(feature_size=n_mels)
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def assemble(config, state: dict, tokens: dict, source) -> object:
    """A WhisperForConditionalGeneration with config, the converted weights `state` and the
    generation config; built on the meta device, so no weight is allocated twice. A weight the
    source lacks is a ModelLoadError naming `source`."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from ..errors import ModelLoadError

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    unset = [n for n, p in model.named_parameters() if p.is_meta]
    if unset:
        raise ModelLoadError(f"{source}: conversion left weights unset, such as {unset[:3]}")
    model.generation_config = generation_config(config, tokens)
    return model
