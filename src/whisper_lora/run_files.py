"""The files of a training run's output folder, by name.

Training writes them (train.py, training/trainer.py); models reads which base model an adapter
needs, merge and export read the adapter, scoring/curves reads the training curves, and the
training options check a checkpoint to resume from."""

TRAINING_CONFIG = "training_config.json"  # flags, data, versions and "base_model" (models reads it)
ADAPTER_CONFIG = "adapter_config.json"  # peft's: the folder holds a LoRA adapter
METRICS = "metrics.json"  # the run's summary, with its log history
TRAINER_STATE = "trainer_state.json"  # transformers' log history, in the folder and in each checkpoint
CHECKPOINT_PREFIX = "checkpoint-"  # checkpoint-N: the state after step N
CHECKPOINT_FILES = (TRAINER_STATE, "optimizer.pt", "scheduler.pt")  # a resumable checkpoint has these
