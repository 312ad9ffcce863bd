"""The decoder prompt each row of the transformers backend starts from: <|startofprev|> with the
hotwords, glossary terms and initial prompt, then the start sequence; rows with prompts of
different lengths padded on the left. A part of HFBackend (hf.py), which sets the attributes used here."""

from __future__ import annotations

import torch

from ..data.glossary import prompt_text
from .options import TranscribeOptions


class PromptIds:
    """HFBackend's prompt methods (self.whisper, tokenizer, gen, multilingual, device, options, prompt_ids)."""

    def _prompt(self, options: TranscribeOptions, terms=()) -> list[int]:
        """<|startofprev|> + hotwords + glossary terms + initial prompt, as token ids ([] for none):
        at most half the decoder's positions. Terms come best first, so the last ones are dropped
        until the prompt fits; then the latest tokens are kept (openai-whisper's and faster-whisper's rule)."""
        terms = list(terms)
        limit = self.whisper.config.max_target_positions // 2 - 1
        while True:
            texts = [t.strip() for t in (options.hotwords, prompt_text(terms), options.initial_prompt) if t and t.strip()]
            if not texts:
                return []
            ids = self.tokenizer.encode(" " + " ".join(texts), add_special_tokens=False)
            if len(ids) <= limit or len(terms) <= 1:
                return [self.tokenizer.convert_tokens_to_ids("<|startofprev|>")] + ids[-limit:]
            terms.pop()

    def _prompt_kwargs(self, prompt_ids=None) -> dict:
        prompt_ids = self.prompt_ids if prompt_ids is None else prompt_ids
        return {"prompt_ids": torch.tensor(prompt_ids, device=self.device)} if prompt_ids else {}

    def _row_prompts(self, terms) -> list[list[int]] | None:
        """Each row's prompt ids for its glossary terms (terms: a list per row), or None where no
        row has terms: then every row has the options' prompt (self.prompt_ids)."""
        if not terms or not any(terms):
            return None
        return [self._prompt(self.options, t) for t in terms]

    def _sot(self, language: str | None) -> list[int]:
        """<|startoftranscript|> with the language and task, as the text was decoded."""
        if not self.multilingual:
            return [self.gen.decoder_start_token_id]
        return [self.gen.decoder_start_token_id, self.gen.lang_to_id[f"<|{language}|>"],
                self.gen.task_to_id[self.options.task]]

    def _start_ids(self, prompts: list[list[int]], languages: list[str], timestamps: bool) -> dict:
        """generate's decoder_input_ids for rows with prompts of different lengths: each row's
        prompt and start sequence, padded on the left, with the mask that hides the padding.
        transformers derives each row's positions from the mask, so a padded row decodes as it
        would alone (tests/test_glossary_decoding.py)."""
        tail = [] if timestamps else [self.gen.no_timestamps_token_id]
        rows = [p + self._sot(code) + tail for p, code in zip(prompts, languages)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.gen.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row):] = torch.tensor(row)
            mask[r, width - len(row):] = 1
        return {"decoder_input_ids": ids.to(self.device), "decoder_attention_mask": mask.to(self.device)}
