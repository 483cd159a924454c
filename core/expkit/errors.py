"""The errors that end a run, in one place: what the lifecycle reads from them, and the user's errors.

`RunError` is the contract between whatever stops a run and the lifecycle that records it
(`expkit.run.lifecycle.open_run`): the status to write, whether it was raised before any training
step, and the metrics and facts the stopped run keeps. Anything else raised is a failure (or an
interruption, for signals), recorded with its type and message.

The user's errors (`TemplateError` and below) name the bad value and what is allowed. They derive
from Hydra's `CompactHydraException`, so `python src/<task>.py …` prints the message alone
(no traceback, no advice below it: `expkit/run/cli.py`) before exiting with status 1;
`HYDRA_FULL_ERROR=1` still shows the full stack.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hydra.errors import CompactHydraException

_NOTHING: Mapping[str, Any] = MappingProxyType({})


class RunError(Exception):
    """An exception that says how the run it ends is recorded in results.json."""

    #: the status written (`pruned`, ...); None: `failed` (`interrupted` for a signal)
    status: str | None = None
    #: raised while checking the inputs, before any training step: a rejected re-run of an existing
    #: run (resume=, a requeue) leaves that run's results.json as it was
    before_training: bool = False
    #: metrics the stopped run reached (written with the record)
    run_metrics: Mapping[str, float] = _NOTHING
    #: other facts for the record (`pruned_at_epoch`, ...)
    run_record: Mapping[str, Any] = _NOTHING


def full_error_requested() -> bool:
    """`HYDRA_FULL_ERROR=1` (or a debugger): the user asked for every error's whole stack trace,
    as Hydra documents."""
    from hydra._internal.utils import _is_env_set, is_under_debugger

    return _is_env_set("HYDRA_FULL_ERROR") or is_under_debugger()


def user_error(exc: BaseException) -> "TemplateError | None":
    """The TemplateError `exc` is or wraps (OmegaConf wraps one raised by a resolver that reads the
    data: `${folder_classes:…}`); None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TemplateError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class TemplateError(CompactHydraException, RunError):
    """Base of the errors below: a message meant for the user, printed without a traceback."""

    #: raised while checking the inputs, before any training step (the run changed nothing yet)
    before_training = True


class ConfigError(TemplateError, ValueError):
    """A config value that would fail late (or silently) inside a library; raised before any training."""


class CheckpointError(TemplateError, RuntimeError):
    """A checkpoint that cannot be used safely: missing, truncated, foreign, or carrying code."""


class UntrustedTargetError(CheckpointError):
    """A config read from a checkpoint or run directory names a callable our configs do not."""


class DatasetNotFoundError(TemplateError, FileNotFoundError):
    """Dataset files are missing and could not be downloaded."""


class RunDirLockedError(TemplateError, RuntimeError):
    """Another live process is writing this run directory."""


class NonFiniteLossError(TemplateError, FloatingPointError):
    """The training loss (or the weights) became NaN/inf; the run stops before saving them."""

    before_training = False


class MetricNotProducedError(TemplateError, KeyError):
    """A sweep job that did not produce the metric its sweep optimizes: no result to rank."""

    before_training = False

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ExportError(TemplateError, RuntimeError):
    """An exported model that disagrees with the PyTorch one beyond the tolerance."""

    before_training = False


class DiskFullError(TemplateError, OSError):
    """The disk filled up while the run wrote a file; the previous good files are intact."""

    before_training = False
