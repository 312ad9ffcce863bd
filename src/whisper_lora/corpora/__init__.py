"""Real recordings of people, with transcripts, that a fresh machine can fetch from Debian's
archive at run time (never committed: the fillets-ng audio is GPL-2): the Dutch voice acting of
Fish Fillets NG (fillets.py) and five LibriVox utterances from pocketsphinx (librivox.py)."""
