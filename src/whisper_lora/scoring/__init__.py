"""Scoring: error rates, evaluation's results and their files, the report and its training curves."""
