"""Training, learning-rate range test, sweeps, evaluation and distributed training."""
