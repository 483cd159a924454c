"""On Ctrl+C, SIGTERM or an exception in the middle of training, save where training got to.

Lightning's `OnExceptionCheckpoint` does the saving (and deletes the file again once a later fit of
the same run completes). This subclass only declines to save what no one should resume from: the
weights after a non-finite loss, and a model that never took a step (the run failed while loading
data or restoring a checkpoint, so there is nothing to keep and a file would look like a result).
A save that fails itself (the disk is full) is logged, and the original error goes on: checkpoints
are written atomically, so the failed save leaves nothing behind.

Under DDP only SIGTERM is saved: Lightning stops every rank at the same step for it. Any other
exception (a crash on one rank, submitit leaving after it requeued the job on SLURM's time-limit
signal, which reaches rank 0 alone) finds the other ranks inside a collective, and the save's own
barrier would hang the job until SLURM kills it; such a run resumes from `last.ckpt`.
"""

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import OnExceptionCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from expkit.errors import NonFiniteLossError, RunError
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


class InterruptCheckpoint(OnExceptionCheckpoint):
    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        super().__init__(dirpath=dirpath, filename=filename)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, NonFiniteLossError):
            return
        if (
            isinstance(exception, RunError) and exception.status == "pruned"
        ):  # an Optuna trial stopped on purpose
            return
        if trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0:
            return
        if trainer.world_size > 1 and not isinstance(exception, SIGTERMException):
            log.warning(
                "%s on rank %d of %d: no %s (the other ranks are not here to save it); "
                "`resume=` continues from the last epoch's checkpoint.",
                type(exception).__name__,
                trainer.global_rank,
                trainer.world_size,
                Path(self.ckpt_path).name,
            )
            return
        try:
            super().on_exception(trainer, pl_module, exception)
        except OSError as err:
            log.error(
                "Could not save %s after %s: %s", self.ckpt_path, type(exception).__name__, err
            )
            return
        log.warning(
            "%s at epoch %d, global step %d: saved %s; continue with "
            "`python src/train.py resume=%s`.",
            type(exception).__name__,
            trainer.current_epoch,
            trainer.global_step,
            self.ckpt_path,
            Path(self.dirpath).parent,
        )
