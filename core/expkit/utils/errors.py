"""Every error the template raises for a user to act on, in one place: each names the bad value and what is allowed.

They derive from Hydra's `CompactHydraException`, so `python src/<task>.py …` prints the message alone
(no traceback, no advice below it: `expkit/run/cli.py`) before exiting with status 1;
`HYDRA_FULL_ERROR=1` still shows the full stack.
"""

from hydra.errors import CompactHydraException


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


class TemplateError(CompactHydraException):
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
