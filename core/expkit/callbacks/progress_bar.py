"""Lightning's Rich progress bar, made to say only what is true now, and readable in a log file.

- Updated every N training batches instead of every batch: Lightning 2.6's `RichProgressBar`
  recomputes the metrics it shows and updates its task on every batch, although the screen is
  redrawn only `refresh_rate` times per second (measured here: ~0.5 ms per batch, 10-20% of a small
  MLP's step on a 2-core CPU).
- Metrics of the current epoch only: Lightning's bar keeps showing a metric logged `on_epoch`
  (`train/loss`) from the epoch before until the epoch ends, and its callbacks run before the
  epoch's values exist, so the last epoch's bar showed the previous epoch's train metrics. Here a
  metric not updated since the epoch started is left out until it is, and the bar is redrawn once
  more when training ends, with the last epoch's own values.
- No `0.00it/s` before the speed is known (two updates are needed to measure it).
- Redirected to a file (not a terminal), Rich cannot redraw a line: it printed only the final bar,
  wrapped label/value across lines. There the bar is off and each finished epoch is one log line.
"""

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import ProcessingSpeedColumn
from rich import get_console, reconfigure
from rich.text import Text

from expkit.errors import ConfigError
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


class _SpeedColumn(ProcessingSpeedColumn):
    """`12.3it/s`, or nothing while Rich has too few updates to know the speed."""

    def render(self, task: Any) -> Any:
        if task.speed is None:
            return Text("")
        return super().render(task)


class ThrottledRichProgressBar(RichProgressBar):
    def __init__(self, update_every_n_batches: int = 20, **kwargs: Any) -> None:
        if update_every_n_batches < 1:
            raise ConfigError(
                f"callbacks.rich_progress_bar.update_every_n_batches={update_every_n_batches} is "
                "not allowed: an integer >= 1."
            )
        super().__init__(**kwargs)
        self.update_every_n_batches = update_every_n_batches
        self._epoch_start_values: dict[str, Any] = {}
        self._lines = False  # one log line per epoch instead of the live bar
        self._epoch_to_report: int | None = None

    # ---- terminal or file ------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        reconfigure(**self._console_kwargs)
        self._lines = not get_console().is_terminal
        if self._lines:
            self.disable()

    # ---- what the bar shows ----------------------------------------------------------------------
    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        stale = {
            key
            for key, value in trainer.progress_bar_metrics.items()
            if self._epoch_start_values.get(key) is value
        }
        return {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k not in stale}

    def configure_columns(self, trainer: pl.Trainer) -> list:
        return [
            _SpeedColumn(style=self.theme.processing_speed)
            if isinstance(column, ProcessingSpeedColumn)
            else column
            for column in super().configure_columns(trainer)
        ]

    # ---- hooks -----------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report_epoch(trainer, pl_module)  # the epoch before, now that its values exist
        self._epoch_start_values = dict(trainer.progress_bar_metrics)
        self._epoch_to_report = trainer.current_epoch
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        done = batch_idx + 1
        if done % self.update_every_n_batches == 0 or done >= self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start_values = {}  # every value shown is now the last epoch's own
        self._report_epoch(trainer, pl_module)
        self._update_metrics(trainer, pl_module)
        self.refresh()
        super().on_train_end(trainer, pl_module)

    def _report_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The one line a finished epoch gets when the console is not a terminal."""
        if not self._lines or self._epoch_to_report is None or not trainer.is_global_zero:
            return
        epoch, self._epoch_to_report = self._epoch_to_report, None
        last = f"/{trainer.max_epochs - 1}" if trainer.max_epochs not in (None, -1) else ""
        shown = {
            k: v
            for k, v in trainer.progress_bar_metrics.items()
            if self._epoch_start_values.get(k) is not v
        }
        metrics = " · ".join(f"{k} {float(v):.3f}" for k, v in sorted(shown.items()))
        log.info("Epoch %d%s  %s", epoch, last, metrics or "(no metrics logged)")
