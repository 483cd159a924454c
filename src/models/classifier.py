"""The LightningModule for image classification: wraps any `nn.Module` net that maps images to logits.

The optimizer and scheduler arrive as factories (`_partial_: true` configs), so the module owns the
training logic and the configs own every number. Only plain values reach the checkpoint's
hyperparameters: it loads with `torch.load(weights_only=True)`.
"""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy


class Classifier(pl.LightningModule):
    """Cross-entropy classifier logging `train/`, `val/`, `test/` loss and accuracy once per epoch.

    Steps only accumulate; metrics are computed and logged at epoch end. Logging from every step
    costs Lightning ~0.3 ms of bookkeeping per call, more than a small model's step on a CPU.
    """

    #: every metric key this module logs; callbacks may only monitor these
    LOGGED_METRICS = (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
    )

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        scheduler: Callable[..., object] | None = None,
        monitor: str = "val/loss",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # Training: one running (loss sum, correct, count) tensor, one in-place add per step.
        # torchmetrics' update() for loss + accuracy costs ~0.25 ms per step on a CPU (5% of a small
        # MLP's step); evaluation batches are large and few, so evaluation uses torchmetrics.
        self.register_buffer("train_sums", torch.zeros(3), persistent=False)
        # validate_args=False: skip per-batch input checks; nan_strategy="disable": no NaN scan
        # (a host sync on GPU)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # resumed runs keep their best-so-far

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` around every hook, ~40 times per training step; a plain
        # string needs none of nn.Module.__setattr__'s parameter/buffer/submodule bookkeeping.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ---- training -----------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():  # add_ in place: `+=` would re-register the buffer every step
            correct = (logits.argmax(dim=1) == y).sum()
            self.train_sums.add_(
                torch.stack((loss * len(y), correct.to(loss.dtype), loss.new_tensor(len(y))))
            )
        return loss

    def on_train_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(
            self.train_sums.clone(), reduce_op="sum"
        )  # over DDP ranks
        loss_sum, correct, count = sums.unbind()
        self.log_dict({"train/loss": loss_sum / count, "train/acc": correct / count}, prog_bar=True)
        self.train_sums.zero_()

    # ---- evaluation ---------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[Tensor, Tensor], loss_metric: MeanMetric, acc_metric) -> None:
        x, y = batch
        logits = self(x)
        loss_metric.update(F.cross_entropy(logits, y))
        acc_metric.update(logits.argmax(dim=1), y)

    def _log_eval_epoch(self, stage: str, loss_metric: MeanMetric, acc_metric) -> Tensor:
        """compute() syncs across DDP ranks; reset() readies the next epoch."""
        loss, acc = loss_metric.compute(), acc_metric.compute()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc}, prog_bar=stage == "val")
        loss_metric.reset()
        acc_metric.reset()
        return acc

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_acc)

    def on_validation_epoch_end(self) -> None:
        acc = self._log_eval_epoch("val", self.val_loss, self.val_acc)
        if self.trainer.sanity_checking:  # a few untrained batches must not count as "best"
            return
        self.val_acc_best.update(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss, self.test_acc)

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test", self.test_loss, self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x).softmax(dim=1)

    # ---- setup --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit":
            self.net.compile()  # in place: state_dict keys stay those of the plain net

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams.monitor,
                "interval": "epoch",
            },
        }
