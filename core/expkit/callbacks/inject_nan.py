"""A debugging aid, never part of a real run: makes the loss NaN on purpose (`debug=nan_loss`).

It fills every weight of the model with NaN at the start of epoch `at_epoch` (None: never), so the failure path of a run
or of a sweep job (recorded as failed, the sweep goes on) can be exercised on demand; a large
learning rate diverges only sometimes.
"""

import pytorch_lightning as pl
import torch

from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


class InjectNaN(pl.Callback):
    def __init__(self, at_epoch: int | None = 0) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch:
            log.warning("debug: filling the weights with NaN at epoch %d", self.at_epoch)
            with torch.no_grad():
                for param in pl_module.parameters():
                    param.fill_(float("nan"))
