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

from src.utils.logging_utils import get_logger

log = get_logger(__name__)


class History(pl.Callback):
    def __init__(self, output_dir: str, plot: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.plot = plot
        self.rows: list[dict[str, float]] = []
        self._epoch_start = self._val_start = 0.0
        self._val_time = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start, self._val_time = time.perf_counter(), 0.0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_time += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update(
            {
                k: float(v)
                for k, v in trainer.callback_metrics.items()
                if "/" in k and not k.startswith("test/")
            }
        )
        for i, optimizer in enumerate(trainer.optimizers):
            row["lr" if i == 0 else f"lr_{i}"] = optimizer.param_groups[0]["lr"]
        epoch_time = time.perf_counter() - self._epoch_start
        row["epoch_time_s"] = round(epoch_time, 4)  # train + validation
        row["train_time_s"] = round(epoch_time - self._val_time, 4)
        self.rows.append(row)
        if trainer.is_global_zero:
            self.write_csv()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.plot and self.rows:
            self.write_curves()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))

    # ---- outputs ------------------------------------------------------------------------------
    @property
    def csv_path(self) -> Path:
        return self.output_dir / "history.csv"

    def write_csv(self) -> None:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def write_curves(self) -> Path:
        """Loss and each metric, train vs val, against epochs (matplotlib, imported only here)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = sorted(
            {
                k.split("/", 1)[1]
                for row in self.rows
                for k in row
                if k.startswith(("train/", "val/"))
            }
        )
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        epochs = [row["epoch"] for row in self.rows]
        for ax, name in zip(axes[0], names, strict=True):
            for stage in ("train", "val"):
                values = [row.get(f"{stage}/{name}", math.nan) for row in self.rows]
                if not all(math.isnan(v) for v in values):
                    ax.plot(epochs, values, marker="o", markersize=3, label=stage)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = self.output_dir / "curves.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
