"""Errors the template raises for bad input: each message names the key, the bad value and what is allowed.

They derive from Hydra's `CompactHydraException`, so `python src/train.py …` prints the message alone
(no traceback) before exiting with status 1; `HYDRA_FULL_ERROR=1` still shows the full stack.
"""

from hydra.errors import CompactHydraException


class TemplateError(CompactHydraException):
    """Base of the errors below: a message meant for the user, printed without a traceback."""

    #: raised while checking the inputs, before any training step (the run changed nothing yet)
    before_training = True


class ConfigError(TemplateError, ValueError):
    """A config value that would fail late (or silently) inside a library; raised before any training."""


class CheckpointError(TemplateError, RuntimeError):
    """A checkpoint that cannot be used safely: missing, truncated, foreign, or carrying code."""


class DatasetNotFoundError(TemplateError, FileNotFoundError):
    """Dataset files are missing and could not be downloaded."""


class NonFiniteLossError(TemplateError, FloatingPointError):
    """The training loss (or the weights) became NaN/inf; the run stops before saving them."""

    before_training = False
