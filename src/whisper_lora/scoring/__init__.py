"""Scoring: error rates, the evaluation report and its training curves."""
