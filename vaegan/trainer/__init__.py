"""The PyTorch side of vaegan: models, losses, data, the training loop, checkpoints and metrics."""
