"""CSV and TensorBoard histories that continue when the run continues.

A run continued in its own directory (`resume=<run_dir>`, a SLURM requeue) resumes from a
checkpoint and logs again from global step G (`expkit.checkpoints.resume.first_step_to_log`: the
checkpoint's step, one more for a checkpoint taken within an epoch). What the loggers wrote
before step G is kept and what they wrote from G on is dropped (that part of the training runs
again: a checkpoint older than the logs, e.g. the newest one did not load), so each history
holds every step once:

- `ContinuedCSVLogger`: Lightning's CSVLogger deletes `csv/metrics.csv` when a new process opens
  it ("Previous log files in this directory will be deleted"); this one keeps the rows logged
  before step G (atomically rewritten) and appends after them. A line cut short by a kill is dropped.
- `ContinuedTensorBoardLogger`: the new process writes its own event file in the same directory,
  starting with TensorBoard's own purge marker at step G (`SummaryWriter(purge_step=G)`), so
  TensorBoard hides the old events from step G on.

`continue_histories(trainer.loggers, G)` tells them G (src/train.py, before the first log call).
MLflow and W&B continue their run by its stored id instead (`expkit.loggers.run_ids`); their metric
histories cannot be cut, so a replayed part appears there twice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from expkit.utils.atomic import atomic_write_text
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


def _step(row: dict[str, Any]) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, minus the deletion of an existing metrics.csv; rewrites atomic."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        header = self._read()[0]
        if header:  # rows appended later must fit the header already in the file
            self.metrics_keys = sorted(header)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        pass

    def _read(self) -> tuple[list[str], list[dict[str, Any]]]:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return [], []
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="replace")))
        header = list(reader.fieldnames or [])
        # a line a kill cut short has too few fields (None values) or too many (a None key)
        rows = [
            r for r in reader if None not in r and None not in r.values() and _step(r) is not None
        ]
        return header, rows

    def _write(self, header: list[str], rows: list[dict[str, Any]]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_file_path, out.getvalue())

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        header, rows = self._read()
        self._write(fieldnames, rows)

    def keep_before(self, step: int) -> tuple[int, int]:
        """Drop the rows logged at `step` or later; (rows kept, rows dropped)."""
        header, rows = self._read()
        if not header:
            return 0, 0
        kept = [r for r in rows if (_step(r) or 0) < step]
        self._write(header, kept)
        return len(kept), len(rows) - len(kept)


class ContinuedCSVLogger(CSVLogger):
    """`CSVLogger` whose `metrics.csv` continues across processes (see the module's docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _ContinuedWriter:
        if not isinstance(self._experiment, _ContinuedWriter):
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def continue_from(self, step: int) -> None:
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return
        self.experiment.save()  # anything logged in this process so far goes in first
        kept, dropped = self.experiment.keep_before(step)
        log.info(
            "%s continues: %d row(s) logged before step %d kept%s.",
            path,
            kept,
            step,
            f", {dropped} from step {step} on dropped (trained again now)" if dropped else "",
        )


class ContinuedTensorBoardLogger(TensorBoardLogger):
    """`TensorBoardLogger` whose new event file hides the old events from the resumed step on."""

    @rank_zero_only
    def continue_from(self, step: int) -> None:
        log_dir = Path(self.log_dir)
        if not any(log_dir.glob("events.out.tfevents.*")):
            return
        if self._experiment is None:
            self._kwargs["purge_step"] = step  # the SummaryWriter opens its file with the marker
        else:  # already open: write the same two events SummaryWriter(purge_step=) writes
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            writer = self.experiment._get_file_writer()
            writer.add_event(Event(step=step, file_version="brain.Event:2"))
            writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
            writer.flush()
        log.info("%s continues: TensorBoard hides its events from step %d on.", log_dir, step)


def continue_histories(loggers: Iterable[Any], step: int) -> None:
    """Tell each logger that can cut its history that training continues from global step `step`."""
    for logger in loggers:
        continue_from = getattr(logger, "continue_from", None)
        if callable(continue_from):
            continue_from(step)
