"""What reaches the console, and in what form; the run's log file keeps every record.

A run's console is read by a person: this project's messages alone (no timestamp or logger name on
INFO), warnings and errors from anyone, and third-party INFO chatter (Lightning's device lines and
its advertising tips) only in the log file. Used by `configs/hydra/job_logging/console.yaml`; no
heavy imports here, Hydra loads it before the run.
"""

import logging
import warnings

#: loggers whose INFO (and, under `debug=…`, DEBUG) records are shown on the console
PROJECT_LOGGERS = ("expkit", "src", "hydra_plugins", "hydra", "__main__")


def is_project_logger(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PROJECT_LOGGERS)


class ProjectOnConsole(logging.Filter):
    """This project's records at any level; everyone else's from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_project_logger(record.name)


class ConsoleFormatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed with the level and the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname} [{record.name}] {message}"


class NoThirdPartyTips(logging.Filter):
    """Drops Lightning's '💡 Tip: … try installing litlogger/litmodels' advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


#: the logger Lightning's `rank_zero_info` (its tips included) writes to
LIGHTNING_RANK_ZERO = "pytorch_lightning.utilities.rank_zero"


def quiet_third_party_tips() -> None:
    """Install `NoThirdPartyTips` on Lightning's rank-zero logger (idempotent), wherever the run's
    logging comes from (Hydra's job logging, a test, a notebook)."""
    logger = logging.getLogger(LIGHTNING_RANK_ZERO)
    if not any(isinstance(f, NoThirdPartyTips) for f in logger.filters):
        logger.addFilter(NoThirdPartyTips())
    # Lightning's advice to prefix `srun` on any machine where SLURM is installed: our SLURM
    # launchers start jobs under srun themselves, and a local run on such a machine is deliberate
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
