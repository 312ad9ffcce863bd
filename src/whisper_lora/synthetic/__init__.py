"""Synthetic speech: espeak-ng voices and the demo's data sets, made offline."""
