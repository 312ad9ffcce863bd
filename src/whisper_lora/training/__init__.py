"""Training: options, labels, the data set, clip packing, the trainer and its encoder cache."""
