"""Stop training at the first NaN/inf loss, naming the step, before any checkpoint holds bad weights.

Lightning has no such check for the training loss: `EarlyStopping(check_finite=True)` looks only at
the monitored validation metric, once per epoch, after the bad weights were already validated and
possibly saved as `last.ckpt`; `detect_anomaly` slows every step down several times.

Cost per step: reading a loss value on the host forces a GPU sync (and even on a CPU, a check per
step costs ~0.1 ms of Python, 5% of a small MLP's step), so losses are kept on their device and
checked in one go every `check_every_n_steps` steps. However long the window, nothing bad is ever written: the pending losses are also
checked at the last batch of each epoch (before validation and `ModelCheckpoint`) and whenever any
checkpoint is about to be written, together with the weights themselves (an overflowed gradient can
turn the weights non-finite while the loss that produced it was still finite).

Under manual optimization (`automatic_optimization = False`) `training_step` returns nothing: there
the signal is what the module logged while training (its `train` metrics, and anything named
`*loss*`) and the weights themselves, checked at the same moments (every `check_every_n_steps`
steps, the last batch of an epoch, every checkpoint). The advice names the learning rate the module
really uses: `optimizer.lr` only for a module that takes the optimizer group.
"""

import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor

from expkit.errors import ConfigError, NonFiniteLossError
from expkit.utils.metric_names import epoch_values, stage_of
from expkit.callbacks.lifecycle import LifecyclePart


def lr_hint(module: object) -> str:
    """'a lower optimizer.lr', or the module's own learning-rate argument (`model.lr`) when it
    builds its own optimizer, or its `configure_optimizers` when it has no such argument."""
    init = getattr(type(module), "__init__", None)
    try:
        takes_optimizer = init is not None and "optimizer" in inspect.signature(init).parameters
    except (TypeError, ValueError):
        takes_optimizer = False
    if takes_optimizer:
        return "a lower optimizer.lr"
    hparams = getattr(module, "hparams", None) or {}
    own = [k for k in hparams if k.lower() == "lr" or "learning_rate" in k.lower() or "lr_" in k]
    if own:
        return "a lower " + " or ".join(f"model.{k}" for k in own)
    return "a lower learning rate (the module's configure_optimizers sets it)"


class _Window(NamedTuple):
    """Where the pending losses start; loss i of the window is batch `batch + i`."""

    epoch: int
    batch: int
    global_step: int


class StopOnNonFiniteLoss(LifecyclePart):
    def __init__(self, check_every_n_steps: int = 50) -> None:
        if check_every_n_steps < 1:
            raise ConfigError(
                f"callbacks.finite_loss.check_every_n_steps={check_every_n_steps} is not allowed: "
                "an integer >= 1."
            )
        self.check_every_n_steps = check_every_n_steps
        self._pending: list[Tensor] = []
        self._window = _Window(0, 0, 0)
        self._manual_steps = 0
        self._hint = "a lower optimizer.lr"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._hint = lr_hint(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, Tensor):
            if not pl_module.automatic_optimization:  # it steps itself and returns nothing
                self._manual_steps += 1
                last_batch = batch_idx + 1 >= trainer.num_training_batches
                if self._manual_steps >= self.check_every_n_steps or last_batch:
                    self._manual_steps = 0
                    self.check_logged(trainer, pl_module)
            return  # (automatic optimization) training_step returned None: the batch was skipped
        if not self._pending:
            self._window = _Window(trainer.current_epoch, batch_idx, trainer.global_step)
        self._pending.append(loss.detach())
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if len(self._pending) >= self.check_every_n_steps or last_batch:
            self.check_losses(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        # no collective here: a save can come from one rank's exception handler
        self.check_losses(trainer, all_ranks=False)
        if not pl_module.automatic_optimization:
            self.check_logged(trainer, pl_module, all_ranks=False)
        self.check_weights(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check_losses(trainer)

    def check_losses(self, trainer: pl.Trainer, all_ranks: bool = True) -> None:
        """One host sync for all pending losses; raise at the first non-finite one.

        Under DDP every rank checks at the same batches and they agree (one all-reduce of a flag),
        so all stop together instead of the healthy ranks waiting forever for the stopped one.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        finite = torch.isfinite(torch.stack(pending).float())
        bad_here = not bool(finite.all())
        bad = bad_here
        if all_ranks and getattr(trainer, "world_size", 1) > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad_here, all=False)
        if not bad:
            return
        if not bad_here:
            raise NonFiniteLossError(
                f"The training loss became NaN/inf on another process by epoch "
                f"{trainer.current_epoch}, global step {trainer.global_step}: training stopped."
            )
        i = int((~finite).nonzero()[0])
        window, loss = self._window, float(pending[i])
        raise NonFiniteLossError(
            f"The training loss is {loss} at epoch {window.epoch}, batch {window.batch + i} "
            f"(global step {window.global_step + i}): training stopped there, and no checkpoint was "
            f"written after it. {_last_good(trainer)} Try {self._hint}, "
            "trainer.gradient_clip_val=1.0, or trainer.precision=32-true."
        )

    def check_logged(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, all_ranks: bool = True
    ) -> None:
        """Manual optimization: the training metrics logged so far and the weights, in one go."""
        logged = epoch_values(trainer.callback_metrics)  # `x_step` and `x` hold the same value
        watched = {
            k: v
            for k, v in logged.items()
            if isinstance(v, Tensor) and (stage_of(k) == "train" or "loss" in k.lower())
        }
        values = [v.detach().float().reshape(-1) for v in watched.values()]
        params = [p.detach().reshape(-1) for p in pl_module.parameters()]
        flags = [torch.isfinite(t).all() for t in values]
        flags.append(torch.stack([torch.isfinite(p).all() for p in params]).all())
        bad_here = not bool(torch.stack(flags).all()) if params else False
        bad = bad_here
        if all_ranks and getattr(trainer, "world_size", 1) > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad_here, all=False)
        if not bad:
            return
        if not bad_here:
            raise NonFiniteLossError(
                f"A training metric or weight became NaN/inf on another process by epoch "
                f"{trainer.current_epoch}, global step {trainer.global_step}: training stopped."
            )
        bad_metrics = [
            f"{k}={float(v.reshape(-1)[0])}"
            for k, v in watched.items()
            if not bool(torch.isfinite(v).all())
        ]
        what = (
            f"The training metric {', '.join(bad_metrics)}"
            if bad_metrics
            else "A weight ("
            + next(name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all())
            + ") is NaN/inf"
        )
        raise NonFiniteLossError(
            f"{what} by epoch {trainer.current_epoch}, global step {trainer.global_step} "
            f"(manual optimization, checked every {self.check_every_n_steps} steps): training "
            f"stopped there, and no checkpoint was written after it. {_last_good(trainer)} Try "
            f"{self._hint}, or trainer.precision=32-true."
        )

    def check_weights(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = [p.detach() for p in pl_module.parameters()]
        if not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            return
        bad = next(name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all())
        raise NonFiniteLossError(
            f"Parameter {bad!r} became NaN/inf by epoch {trainer.current_epoch} (global step "
            f"{trainer.global_step}) although the loss was finite (an overflowed gradient): "
            f"training stopped and this checkpoint was not written. {_last_good(trainer)} "
            f"Try trainer.gradient_clip_val=1.0 or {self._hint}."
        )


def _last_good(trainer: pl.Trainer) -> str:
    """The checkpoint written most recently by any ModelCheckpoint (all written before the fault)."""
    paths = {
        Path(path)
        for callback in trainer.checkpoint_callbacks
        for path in (
            getattr(callback, "last_model_path", ""),
            getattr(callback, "best_model_path", ""),
        )
        if path and Path(path).is_file()
    }
    if not paths:
        return "There is no earlier checkpoint."
    return f"Last good checkpoint: {max(paths, key=lambda p: p.stat().st_mtime_ns)}."


def fail_if_diverged(
    metrics: Mapping[str, float | str],
    epochs: int | None = None,
    hint: str = "a lower optimizer.lr",
) -> None:
    """After fit: raise `NonFiniteLossError` naming each `*loss` metric that is NaN or infinite.

    The backstop for a run without the callback above: early stopping watches only the monitored
    metric, and an accuracy stays finite when the loss is NaN, so a diverged run would otherwise
    end `completed` with meaningless numbers, and a sweep would rank it like any other job.
    """
    bad = {
        key: value
        for key, value in metrics.items()
        if "loss" in key.lower() and not math.isfinite(float(value))
    }
    if bad:
        where = f" after {epochs} epoch(s)" if epochs is not None else ""
        values = ", ".join(f"{key}={value}" for key, value in bad.items())
        raise NonFiniteLossError(
            f"The loss diverged: {values}{where}. Try {hint}, "
            "trainer.gradient_clip_val, or check the data for NaN/inf values."
        )
