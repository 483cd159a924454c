"""One row per validation (and per epoch) of every logged metric → `history.csv` + `curves.png`.

Lightning's CSVLogger writes step rows and epoch rows interleaved with blanks, and no plot; this is
the table and the picture a user wants after a fit. Each epoch ends one row (train metrics, the
validation run at that epoch's end, learning rate, epoch time); a validation in the middle of an
epoch (`trainer.val_check_interval=0.5`) adds its own row with its `val/*` metrics. Every row has
`epoch`, `step` and `progress` (epochs trained when it was taken: 0.5, 1.0, ...); the curves are
drawn against `progress` when there are mid-epoch rows, else against `epoch` as before.
The rows live in the callback's state, so a resumed run continues its table instead of starting a
new one.
"""

import csv
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from expkit.utils.atomic import atomic_open, atomic_path
from expkit.utils.logging_utils import get_logger
from expkit.utils.metric_names import base_name, epoch_values, lookup, stage_of
from expkit.callbacks.lifecycle import LifecyclePart

log = get_logger(__name__)


class History(LifecyclePart):
    def __init__(
        self, output_dir: str, plot: bool = True, monitor: str | None = None, mode: str = "min"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.plot = plot
        self.monitor, self.mode = monitor, mode
        self.rows: list[dict[str, float]] = []
        self._epoch_start = 0.0
        self._last_batch_end = 0.0
        self._lrs: dict[str, float] = {}
        self._trainer: pl.Trainer | None = None
        self._open = False  # the last row may still miss metrics logged after it was taken
        self._batches = 0  # training batches done in this epoch (for `progress`)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._complete_last_row()
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._batches = 0
        # the rate the epoch trains with (read at its end, an epoch scheduler has already stepped)
        self._lrs = {
            "lr" if i == 0 else f"lr_{i}": optimizer.param_groups[0]["lr"]
            for i, optimizer in enumerate(trainer.optimizers)
        }

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        self._last_batch_end = time.perf_counter()
        self._batches += 1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A row per validation run during a fit. The one at an epoch's end (Lightning runs it
        before `on_train_epoch_end`) becomes that epoch's row there; one in the middle of an epoch
        stays a row of its own with only `val/*` (the `train/*` values are the last epoch's)."""
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._complete_last_row()
        total = trainer.num_training_batches
        fraction = self._batches / total if isinstance(total, int) and total > 0 else 1.0
        row: dict[str, float] = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "progress": round(trainer.current_epoch + min(fraction, 1.0), 4),
        }
        row.update({k: v for k, v in self._epoch_metrics(trainer).items() if stage_of(k) == "val"})
        row.update(self._lrs)
        self.rows.append(row)
        if trainer.is_global_zero:
            self.write_csv()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last = self.rows[-1] if self.rows else None
        if (
            last is not None
            and last["epoch"] == trainer.current_epoch
            and last["step"] == trainer.global_step
            and "epoch_time_s" not in last
        ):
            row = self.rows.pop()  # the validation at this epoch's end: it becomes the epoch row
        else:
            row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row["progress"] = float(trainer.current_epoch + 1)
        row.update(self._epoch_metrics(trainer))
        row.update(self._lrs)
        # train_time_s: the training batches alone (what a plain PyTorch loop would time);
        # epoch_time_s: the whole epoch, validation and checkpoint writing included
        row["epoch_time_s"] = round(time.perf_counter() - self._epoch_start, 4)
        row["train_time_s"] = round(self._last_batch_end - self._epoch_start, 4)
        self.rows.append(row)
        # Lightning calls this hook *before* the module's own on_train_epoch_end, where a module may
        # log its epoch's train metrics (until then the previous epoch's values are still there):
        # the row is completed, and written, by the next hook that runs after it.
        self._trainer, self._open = trainer, True

    @staticmethod
    def _epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
        """Every metric logged so far but the test ones, each once (by its epoch value), under
        whatever name the module gave it (`val/loss`, `val_loss`, `loss/val`, `d_loss`)."""
        metrics = epoch_values(trainer.callback_metrics)
        return {k: float(v) for k, v in metrics.items() if stage_of(k) != "test"}

    def _complete_last_row(self) -> None:
        """Refresh the last row with what was logged after it was taken, then write the table."""
        if not (self._open and self.rows and self._trainer is not None):
            return
        self._open = False
        row = self.rows[-1]
        row.update(self._epoch_metrics(self._trainer))  # now also what was logged after the hook
        if self._trainer.is_global_zero:
            self.write_csv()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._complete_last_row()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A run stopped early (pruned, interrupted, failed) keeps the rows it had."""
        self._complete_last_row()
        if trainer.is_global_zero and self.rows:
            try:
                self.write_csv()
            except OSError as err:  # e.g. the disk is full: the previous history.csv is intact
                log.error("Could not write %s: %s", self.csv_path, err)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._complete_last_row()
        if trainer.is_global_zero and self.plot and self.rows:
            self.write_curves()

    def state_dict(self) -> dict[str, Any]:
        self._complete_last_row()  # ModelCheckpoint saves after the module's epoch-end hook
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callback state for test/predict too: testing the best checkpoint after a
        # fit must not roll the table back to that epoch. Only a fresh callback (a resume) takes it.
        if not self.rows:
            self.rows = list(state_dict.get("rows", []))

    # ---- outputs ------------------------------------------------------------------------------
    @property
    def csv_path(self) -> Path:
        return self.output_dir / "history.csv"

    def write_csv(self) -> None:
        columns = list(dict.fromkeys(k for row in self.rows for k in row)) or ["epoch"]
        with atomic_open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def write_curves(self) -> Path:
        """Loss first, then each metric, train vs val per epoch; `val/x_best` dashed on the `x` panel,
        the best epoch (by `monitor`) marked, and the learning rate when it changes (matplotlib, imported
        only here)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = {k for row in self.rows for k in row if k not in NOT_METRICS and not _is_lr(k)}
        # one panel per metric (`train/loss`, `val_loss` and `loss/val` share the `loss` panel),
        # losses first; one line per stage (a name without a stage is its own line)
        panels_of: dict[str, dict[str, str]] = {}
        for key in sorted(keys):
            if key.endswith("_best") and stage_of(key) is not None:
                continue  # drawn dashed on the panel of the metric it tracks
            panels_of.setdefault(base_name(key), {})[stage_of(key) or key] = key
        names = sorted(panels_of, key=lambda name: ("loss" not in name.lower(), name))
        lrs = [row.get("lr", math.nan) for row in self.rows]
        plot_lr = len({lr for lr in lrs if not math.isnan(lr)}) > 1
        panels = max(1, len(names) + plot_lr)  # no metric at all: one empty panel, not a crash
        fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), squeeze=False)
        xs, xlabel = self._x_axis()
        best_x = self._best_x()

        def series(key: str) -> list[float]:
            return [row.get(key, math.nan) for row in self.rows]

        for ax, name in zip(axes[0], names, strict=False):
            for label, key in panels_of[name].items():
                values = series(key)
                if not all(math.isnan(v) for v in values):
                    ax.plot(*_present(xs, values), marker="o", markersize=3, label=label)
                if f"{key}_best" in keys:
                    best = series(f"{key}_best")
                    ax.plot(*_present(xs, best), "--", label=f"{label} best")
            ax.set_title(name)
        if plot_lr:
            ax = axes[0][-1]
            ax.plot(*_present(xs, lrs), marker="o", markersize=3, color="gray")
            ax.set_title("learning rate")
        for ax in axes[0]:
            if best_x is not None:
                ax.axvline(best_x, color="gray", linestyle=":", linewidth=1, label="best")
            ax.set_xlabel(xlabel)
            if xlabel == "epoch":
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        fig.tight_layout()
        path = self.output_dir / "curves.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        return path

    def _best_epoch(self) -> int | None:
        """The epoch whose `monitor` value is best (what the best checkpoint holds), if known."""
        best = best_row(self.rows, self.monitor, self.mode)
        return int(best["epoch"]) if best else None

    def _mid_epoch_rows(self) -> bool:
        return any(float(row.get("progress", 0)) % 1 for row in self.rows)

    def _x_axis(self) -> tuple[list[float], str]:
        """Epoch numbers as before, or epochs trained (fractional) when some rows are mid-epoch."""
        if self._mid_epoch_rows():
            return [
                float(row.get("progress", row["epoch"] + 1)) for row in self.rows
            ], "epochs trained"
        return [row["epoch"] for row in self.rows], "epoch"

    def _best_x(self) -> float | None:
        """Where the row whose `monitor` value is best (what the best checkpoint holds) sits."""
        best = best_row(self.rows, self.monitor, self.mode)
        if best is None:
            return None
        xs, _ = self._x_axis()
        return xs[next(i for i, row in enumerate(self.rows) if row is best)]


def best_row(
    rows: list[dict[str, float]], monitor: str | None, mode: str
) -> dict[str, float] | None:
    """The row whose `monitor` value is best (max or min), skipping rows without it."""

    def value(row: dict[str, float]) -> float:
        return float(lookup(row, monitor, math.nan))  # `val_loss_epoch` finds `val_loss`

    scored = [row for row in rows if monitor and not math.isnan(value(row))]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=value)


#: the columns of a history row that are not logged metrics
NOT_METRICS = frozenset({"epoch", "step", "progress", "epoch_time_s", "train_time_s"})


def _is_lr(key: str) -> bool:
    return key == "lr" or (key.startswith("lr_") and key[3:].isdigit())


def metric_columns(row: dict[str, float]) -> dict[str, float]:
    """The logged metrics of a history row (its epoch, step, times and learning rates left out)."""
    return {k: v for k, v in row.items() if k not in NOT_METRICS and not _is_lr(k)}


def _present(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """The points that have a value: a mid-epoch row has no `train/*`, and a line must not break."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]
