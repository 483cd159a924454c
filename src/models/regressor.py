"""The LightningModule for regression: a net with one output per sample, MSE / MAE / R² metrics.

The loss is the MSE on the *standardized* target (mean 0, std 1 over the training split), which
keeps the loss near 1 whatever the target's units; `forward` turns the net's output back into the
target's units, so metrics, predictions and exports read in real units. The target's mean and
std come from the datamodule (`target_stats`, fitted on the training split) when the fit starts and
are buffers of this module: they travel in its `state_dict` and checkpoints.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score

from expkit.errors import ConfigError
from src.models.supervised import SupervisedModule


def _squared_error(pred: Tensor, y: Tensor) -> Tensor:
    return (pred - y).square().sum()


def _absolute_error(pred: Tensor, y: Tensor) -> Tensor:
    return (pred - y).abs().sum()


class Regressor(SupervisedModule):
    """Predicts one number per sample; logs loss, `mse`, `mae` (train, val, test) and `r2` (val, test)."""

    EVAL_METRICS = {
        "mse": lambda m: MeanSquaredError(),
        "mae": lambda m: MeanAbsoluteError(),
        "r2": lambda m: R2Score(),
    }
    TRAIN_SUMS = {"mse": _squared_error, "mae": _absolute_error}
    BEST = ("mse", "min")
    #: the exported model's input and output names (export.py): `forward` is in the target's units
    input_names = ["features"]
    output_names = ["prediction"]

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_outputs: int = 1,
        scheduler: Callable[..., object] | None = None,
        monitor: str = "val/mse",
        compile: bool = False,
    ) -> None:
        super().__init__(net, optimizer, scheduler, monitor, compile)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        """Predictions in the target's own units, shape N."""
        return self.net(x).squeeze(-1) * self.target_std + self.target_mean

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return ((outputs - targets) / self.target_std).square().mean()

    def setup(self, stage: str) -> None:
        if self.hparams.num_outputs != 1:  # checked here: every config must still instantiate
            raise ConfigError(
                f"model=regressor predicts one target, but data.num_classes="
                f"{self.hparams.num_outputs}; use data=csv data.task=regression, or a classifier."
            )
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and getattr(datamodule, "task", None) != "regression":
            raise ConfigError(
                f"model=regressor needs a regression target, but the data's task is "
                f"{getattr(datamodule, 'task', 'classification')!r}; use data=csv "
                "data.task=regression (or a classifier model)."
            )
        stats = getattr(datamodule, "target_stats", None)
        if stage == "fit" and stats is not None:  # a checkpoint restored later overrides them
            mean, std = stats
            self.target_mean.fill_(float(mean))
            self.target_std.fill_(float(std))
        super().setup(stage)

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x)
