"""Training: options, labels, the data set, clip packing, LoRA adapters, the trainer and its
encoder cache, and the output folder; train.py at the package's top runs them in order."""
