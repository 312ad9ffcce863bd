"""Data in: what a user has turned into training rows, checked before any model loads.

manifest (JSON/JSONL/CSV rows), validation (every row checked, one report), prepare (audio
folders, subtitle files and Common Voice style tables to a manifest; subtitles and cue_clips
cut the cues), hf_data (Hugging Face datasets as rows), joined (short clips joined into
30-second windows with known boundaries), glossary (domain terms) and lm (a word n-gram
language model from the user's own text). Everything here is base: it reads files and checks
them, and imports no model or decoding code.
"""
