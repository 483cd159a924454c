"""A callback the SLURM requeue tests put into their jobs' config (`+callbacks.pause=...`).

`PauseAfterEpoch` holds a fit at the end of one epoch, after its checkpoints are written, and writes
a flag file; the test then requeues the job. SIGTERM therefore arrives between two epochs, where a
resume is exact (a mid-epoch `interrupted.ckpt` is not: docs/faults.md, "Exact resume"), so the
requeued job must end exactly like its uninterrupted twin. The requeued attempt finds the flag and
does not pause again.
"""

import time
from pathlib import Path

import pytorch_lightning as pl


class PauseAfterEpoch(pl.Callback):
    def __init__(self, epoch: int, flag: str, timeout_s: float = 120.0) -> None:
        self.epoch, self.flag, self.timeout_s = epoch, Path(flag), timeout_s

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch or self.flag.exists():
            return
        self.flag.write_text(f"paused after epoch {self.epoch}\n")
        deadline = time.monotonic() + self.timeout_s
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.1)
