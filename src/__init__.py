"""Hydra + PyTorch Lightning experiment template: the code the configs in `configs/` point at."""
