"""One row per epoch of every logged metric, learning rate and epoch time → `history.csv` + `curves.png`.

Lightning's CSVLogger writes step rows and epoch rows interleaved with blanks, and no plot; this is
the table and the picture a user wants after a fit. The rows live in the callback's state, so a
resumed run continues its table instead of starting a new one.
"""

import csv
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from src.utils.atomic import atomic_open, atomic_path
from src.utils.logging_utils import get_logger

log = get_logger(__name__)


class History(pl.Callback):
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

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._complete_last_row()
        self._epoch_start = self._last_batch_end = time.perf_counter()
        # the rate the epoch trains with (read at its end, an epoch scheduler has already stepped)
        self._lrs = {
            "lr" if i == 0 else f"lr_{i}": optimizer.param_groups[0]["lr"]
            for i, optimizer in enumerate(trainer.optimizers)
        }

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
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
        return {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if "/" in k and not k.startswith("test/")
        }

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
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
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

        keys = {k for row in self.rows for k in row if k.startswith(("train/", "val/"))}
        names = sorted(
            {k.split("/", 1)[1] for k in keys if not k.endswith("_best")},
            key=lambda name: (name != "loss", name),
        )
        lrs = [row.get("lr", math.nan) for row in self.rows]
        plot_lr = len({lr for lr in lrs if not math.isnan(lr)}) > 1
        panels = len(names) + plot_lr
        fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), squeeze=False)
        epochs = [row["epoch"] for row in self.rows]
        best_epoch = self._best_epoch()

        def series(key: str) -> list[float]:
            return [row.get(key, math.nan) for row in self.rows]

        for ax, name in zip(axes[0], names, strict=False):
            for stage in ("train", "val"):
                values = series(f"{stage}/{name}")
                if not all(math.isnan(v) for v in values):
                    ax.plot(epochs, values, marker="o", markersize=3, label=stage)
                if f"{stage}/{name}_best" in keys:
                    ax.plot(epochs, series(f"{stage}/{name}_best"), "--", label=f"{stage} best")
            ax.set_title(name)
        if plot_lr:
            ax = axes[0][-1]
            ax.plot(epochs, lrs, marker="o", markersize=3, color="gray")
            ax.set_title("learning rate")
        for ax in axes[0]:
            if best_epoch is not None:
                ax.axvline(best_epoch, color="gray", linestyle=":", linewidth=1, label="best epoch")
            ax.set_xlabel("epoch")
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


def best_row(
    rows: list[dict[str, float]], monitor: str | None, mode: str
) -> dict[str, float] | None:
    """The row whose `monitor` value is best (max or min), skipping rows without it."""
    scored = [row for row in rows if monitor and not math.isnan(row.get(monitor, math.nan))]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda row: row[monitor])
