"""Decoding: audio in, timed text out, on transformers or CTranslate2 (faster-whisper)."""
