"""Which tokenizer goes with a vocabulary size, for a checkpoint that carries none (openai `.pt`).

OpenAI's Whisper models have three vocabularies, told apart by their size:
  51864  English-only (tiny.en ... medium.en): the bundled tiny.en's tokenizer;
  51865  multilingual, 99 languages (tiny ... large-v2): the bundled base's;
  51866  multilingual, 100 languages (large-v3, large-v3-turbo): base's with Cantonese added.
large-v3 added one language token, <|yue|>, right after the 99 others: it takes id 50358, and
every special token after the languages moves up by one (<|translate|> 50358 -> 50359,
<|transcribe|> 50359 -> 50360, ..., <|notimestamps|> 50363 -> 50364; <|0.00|> is then 50365 and
the 1501 timestamps end at 51865, so 51866 tokens in all). The text tokens are the same, so
base's tokenizer.json with those ids moved is large-v3's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ..errors import ModelLoadError

ENGLISH_VOCAB = 51864
MULTILINGUAL_VOCAB = 51865  # 99 languages
LARGE_V3_VOCAB = 51866  # 100 languages: <|yue|> added
VOCAB_SIZES = (ENGLISH_VOCAB, MULTILINGUAL_VOCAB, LARGE_V3_VOCAB)
CANTONESE = "<|yue|>"


def with_cantonese(tokenizer_json: dict, ct2_config: dict) -> tuple[dict, dict]:
    """Base's tokenizer.json and CTranslate2 config.json turned into large-v3's: <|yue|> after the
    last language, later ids moved up by one, everywhere an id is written (added tokens, the
    post-processor's template, language and suppress lists). New dicts; the inputs are not changed."""
    tokenizer_json, ct2_config = copy.deepcopy(tokenizer_json), copy.deepcopy(ct2_config)
    added = tokenizer_json["added_tokens"]
    if any(t["content"] == CANTONESE for t in added):
        return tokenizer_json, ct2_config
    first_moved = max(ct2_config["lang_ids"]) + 1  # 50358: <|translate|> in base, <|yue|> in large-v3

    def moved(i: int) -> int:
        return i + 1 if i >= first_moved else i

    for t in added:
        t["id"] = moved(t["id"])
        if t["content"] == "<|nocaptions|>":
            t["content"] = "<|nospeech|>"  # openai's later name for the token; large-v3's tokenizer uses it
    template = next(t for t in added if t["content"].startswith("<|") and t["special"])
    added.append({**template, "id": first_moved, "content": CANTONESE})
    added.sort(key=lambda t: t["id"])
    vocab = tokenizer_json["model"]["vocab"]
    for token, i in list(vocab.items()):
        vocab[token] = moved(i)
    _move_template_ids(tokenizer_json.get("post_processor"), moved)
    ct2_config["lang_ids"] = list(ct2_config["lang_ids"]) + [first_moved]
    for key in ("suppress_ids", "suppress_ids_begin"):
        ct2_config[key] = [moved(i) for i in ct2_config.get(key, [])]
    return tokenizer_json, ct2_config


def _move_template_ids(node, moved) -> None:
    """The post-processor's template names its special tokens with their ids ({"ids": [50363]})."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [moved(i) for i in value]
            else:
                _move_template_ids(value, moved)
    elif isinstance(node, list):
        for item in node:
            _move_template_ids(item, moved)


def tokenizer_folder(n_vocab: int, scratch: Path, source: str = "checkpoint") -> Path:
    """A folder with tokenizer.json and CTranslate2's config.json (languages, suppress lists) for
    a vocabulary of n_vocab tokens: a bundled model's folder, or (51866) one written into scratch.
    Needs the offline extra (bundled.py says how to install it)."""
    from .bundled import locate

    if n_vocab not in VOCAB_SIZES:
        raise ModelLoadError(f"{source}: vocabulary of {n_vocab} tokens matches no OpenAI Whisper model "
                             f"({', '.join(map(str, VOCAB_SIZES))}); convert it with transformers' "
                             "convert_openai_to_hf.py and pass the HF folder")
    folder, _ = locate("tiny.en" if n_vocab == ENGLISH_VOCAB else "base")
    if n_vocab != LARGE_V3_VOCAB:
        return folder
    tokenizer_json, ct2_config = with_cantonese(
        json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")),
        json.loads((folder / "config.json").read_text(encoding="utf-8")))
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
    (scratch / "config.json").write_text(json.dumps(ct2_config), encoding="utf-8")
    return scratch
