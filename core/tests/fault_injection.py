"""Faults on cue, for the tests: callbacks added with `+callbacks.fault._target_=fault_injection.X`.

Each fires once, at the start of training batch `batch` of epoch `epoch`, through the same path a
real fault takes (a real signal to this process, a real exception, real NaN inputs).
"""

import math
import os
import signal

import pytorch_lightning as pl
import torch


class _AtBatch(pl.Callback):
    def __init__(
        self, epoch: int, batch: int = 0, rank: int | None = None, fold: int | None = None
    ) -> None:
        self.epoch, self.batch, self.rank = epoch, batch, rank  # rank None: every process
        self.fold = fold  # a cross-validation's fold (data.fold); None: any run

    def _due(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        fold = getattr(getattr(trainer, "datamodule", None), "hparams", {}).get("fold")
        return (
            trainer.current_epoch == self.epoch
            and batch_idx == self.batch
            and self.rank in (None, trainer.global_rank)
            and self.fold in (None, fold)
        )


class SignalAt(_AtBatch):
    """Sends signal `name` (KILL, INT, TERM, USR1) to this process."""

    def __init__(
        self,
        name: str,
        epoch: int,
        batch: int = 0,
        rank: int | None = None,
        fold: int | None = None,
    ) -> None:
        super().__init__(epoch, batch, rank, fold)
        self.signum = signal.Signals[f"SIG{name.upper()}"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx):
            os.kill(os.getpid(), self.signum)


class RaiseAt(_AtBatch):
    """Raises RuntimeError, like a bug or a failing disk in the middle of an epoch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx):
            raise RuntimeError(f"injected failure at epoch {self.epoch}, batch {self.batch}")


class NanInputsAt(_AtBatch):
    """Turns the batch's images into NaN, so that batch's loss (and then the weights) are NaN."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx):
            batch[0].fill_(math.nan)


class InfWeightAt(_AtBatch):
    """After the batch, sets one weight to inf: an overflowed update while the loss was finite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx):
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = math.inf


class SubmititRequeueAt(_AtBatch):
    """Ends the process as submitit does after it requeued a job on SLURM's time-limit signal:
    `sys.exit(-1)` from submitit's own signal handler (the job waits for its next attempt)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx):
            from submitit.core import logger
            from submitit.core.job_environment import SignalHandler

            handler = SignalHandler.__new__(SignalHandler)  # what submitit built at job start
            handler._logger = logger.get_logger()
            handler._exit()
