"""The LightningModule for classification: any `nn.Module` net that maps inputs to class logits.

Metrics are declared once below; adding one is one line in `EVAL_METRICS` (torchmetrics, val and
test) and, if it is a per-sample mean, one line in `TRAIN_SUMS` (training). The keys it logs are
`LOGGED_METRICS`, derived from both.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from expkit.errors import ConfigError
from src.models.supervised import SupervisedModule


def _correct(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(dim=1) == y).sum()


class Classifier(SupervisedModule):
    """Cross-entropy classifier logging `train/`, `val/`, `test/` loss and accuracy once per epoch."""

    # validate_args=False: no per-batch input checks
    EVAL_METRICS = {
        "acc": lambda m: MulticlassAccuracy(
            m.hparams.num_classes, average="micro", validate_args=False
        ),
    }
    TRAIN_SUMS = {"acc": _correct}
    BEST = ("acc", "max")
    #: the exported model's input and output names (export.py; README: input `images`, output `logits`)
    input_names = ["images"]
    output_names = ["logits"]

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        scheduler: Callable[..., object] | None = None,
        monitor: str = "val/loss",
        compile: bool = False,
    ) -> None:
        super().__init__(net, optimizer, scheduler, monitor, compile)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if getattr(datamodule, "task", "classification") != "classification":
            raise ConfigError(
                f"model={type(self).__name__} classifies, but the data's task is "
                f"{datamodule.task!r}; use model=regressor (or data.task=classification)."
            )
        super().setup(stage)

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x).softmax(dim=1)
