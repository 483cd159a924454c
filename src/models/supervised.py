"""The shared LightningModule of every supervised task here: loss + declared metrics per stage.

A task (classification, regression) is a subclass that says three things: its loss, the
torchmetrics it evaluates (`EVAL_METRICS`, one line each) and the cheap running sums it keeps while
training (`TRAIN_SUMS`, one line each). Everything else (accumulating, syncing over DDP ranks,
logging once per epoch, the best-so-far validation value, `LOGGED_METRICS`, optimizers) lives here
once.

Why train and eval metrics are declared apart: a torchmetrics `update()` costs ~0.25 ms per step on a
CPU (5% of a small MLP's step), so training keeps one running-sum tensor updated in place (one
`add_` per step); evaluation batches are large and few, so evaluation uses torchmetrics. Steps only
accumulate; Lightning's per-call `self.log` bookkeeping (~0.3 ms) happens once per epoch.
"""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection, MinMetric

#: values whose assignment to an existing plain attribute needs none of nn.Module's bookkeeping
_PLAIN_VALUES = (str, type(None), bool, int, float)

EVAL_STAGES = ("val", "test")


def logged_keys(
    train_sums: dict, eval_metrics: dict, best: tuple[str, str] | None
) -> tuple[str, ...]:
    """Every key a module with these declarations logs (what `monitor` may name)."""
    keys = ["train/loss", *(f"train/{name}" for name in train_sums)]
    for stage in EVAL_STAGES:
        keys += [f"{stage}/loss", *(f"{stage}/{name}" for name in eval_metrics)]
        if stage == "val" and best is not None:
            keys.append(f"val/{best[0]}_best")
    return tuple(keys)


class SupervisedModule(pl.LightningModule):
    """Wraps any `nn.Module` net; optimizer and scheduler arrive as factories (`_partial_` configs).

    Only plain values reach the checkpoint's hyperparameters, so it loads with
    `torch.load(weights_only=True)`.
    """

    #: metric name -> factory(module) -> a torchmetrics Metric, updated with (outputs, targets) on
    #: every val and test batch; logged as `val/<name>`, `test/<name>`
    EVAL_METRICS: dict[str, Callable[["SupervisedModule"], Metric]] = {}
    #: metric name -> fn(outputs, targets) -> the batch's sum; logged as `train/<name>` = sum / count
    TRAIN_SUMS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
    #: (eval metric, "max" | "min"): its best validation value so far is logged as `val/<name>_best`
    BEST: tuple[str, str] | None = None
    #: every key this module logs (derived from the three above); callbacks may only monitor these
    LOGGED_METRICS: tuple[str, ...] = ("train/loss", "val/loss", "test/loss")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.LOGGED_METRICS = logged_keys(cls.TRAIN_SUMS, cls.EVAL_METRICS, cls.BEST)

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        monitor: str = "val/loss",
        compile: bool = False,
    ) -> None:
        super().__init__()
        # collects the subclass's arguments too (num_classes...); the objects stay out of it
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # (loss sum, sample count, *TRAIN_SUMS) over the epoch's training batches
        self.register_buffer("train_sums", torch.zeros(2 + len(self.TRAIN_SUMS)), persistent=False)
        metrics = {name: factory(self) for name, factory in self.EVAL_METRICS.items()}
        self.eval_metrics = nn.ModuleDict(
            {
                stage: MetricCollection(
                    {k: m.clone() for k, m in metrics.items()}, prefix=f"{stage}/"
                )
                for stage in EVAL_STAGES
            }
        )
        # nan_strategy="disable": no NaN scan per update (a host sync on GPU)
        self.eval_losses = nn.ModuleDict(
            {s: MeanMetric(nan_strategy="disable") for s in EVAL_STAGES}
        )
        if self.BEST is not None:
            name, mode = self.BEST
            best = MaxMetric() if mode == "max" else MinMetric()
            best.persistent(True)  # resumed runs keep their best-so-far
            setattr(
                self, f"val_{name}_best", best
            )  # `val_acc_best`: the key older checkpoints hold

    # ---- what a task provides -----------------------------------------------------------------
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def __setattr__(self, name: str, value) -> None:
        # Lightning assigns a string attribute around every hook (~40 times per training step):
        # nn.Module.__setattr__ takes 1.9 us for it (parameter/buffer/submodule checks), a plain
        # set 0.5 us, ~55 us per step in all. Safe for any plain value replacing an existing plain
        # attribute: a name in the instance __dict__ is never a parameter, buffer or submodule.
        if type(value) in _PLAIN_VALUES and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ---- training -----------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        with torch.no_grad():  # add_ in place: `+=` would re-register the buffer every step
            sums = [loss * len(y), loss.new_tensor(len(y))]
            sums += [fn(outputs, y).to(loss.dtype) for fn in self.TRAIN_SUMS.values()]
            self.train_sums.add_(torch.stack(sums))
        return loss

    def on_train_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.train_sums.clone(), reduce_op="sum")  # DDP ranks
        count = sums[1]
        values = {"train/loss": sums[0] / count}
        values.update(
            {f"train/{k}": s / count for k, s in zip(self.TRAIN_SUMS, sums[2:], strict=True)}
        )
        self.log_dict(values, prog_bar=True)
        self.train_sums.zero_()

    # ---- evaluation ---------------------------------------------------------------------------
    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        outputs = self(x)
        self.eval_losses[stage].update(self.loss(outputs, y))
        self.eval_metrics[stage].update(outputs, y)

    def _log_eval_epoch(self, stage: str) -> dict[str, Tensor]:
        """compute() syncs across DDP ranks; reset() readies the next epoch."""
        values = {f"{stage}/loss": self.eval_losses[stage].compute()}
        values.update(self.eval_metrics[stage].compute())
        self.log_dict(values, prog_bar=stage == "val")
        self.eval_losses[stage].reset()
        self.eval_metrics[stage].reset()
        return values

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        values = self._log_eval_epoch("val")
        if self.BEST is None or self.trainer.sanity_checking:  # untrained batches are no "best"
            return
        name = self.BEST[0]
        best = getattr(self, f"val_{name}_best")
        best.update(values[f"val/{name}"])
        self.log(f"val/{name}_best", best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    # ---- setup --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.hparams.get("compile") and stage == "fit":
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
