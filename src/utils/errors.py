"""Errors the template raises for bad input: each message names the key, the bad value and what is allowed."""


class ConfigError(ValueError):
    """A config value that would fail late (or silently) inside a library; raised before any training."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used safely: missing, truncated, foreign, or carrying code."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded."""
