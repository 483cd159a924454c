"""A callback the SLURM requeue tests put into their jobs' config (`+callbacks.pause=...`).

`PauseAfterEpoch` holds a fit at the end of one epoch, after its checkpoints are written, and writes
a flag file; the test then requeues the job. SIGTERM therefore arrives between two epochs, where a
resume is exact (a mid-epoch `interrupted.ckpt` is not: docs/faults.md, "Exact resume"), so the
requeued job must end exactly like its uninterrupted twin. The requeued attempt finds the flag and
does not pause again. Under DDP each rank pauses with its own flag file (`<flag>.rank<k>`).
"""

import time
from pathlib import Path

import pytorch_lightning as pl


class PauseAfterEpoch(pl.Callback):
    def __init__(self, epoch: int, flag: str, timeout_s: float = 120.0) -> None:
        self.epoch, self.flag, self.timeout_s = epoch, Path(flag), timeout_s

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # under DDP every rank pauses, each with its own flag (rank 0's is `flag`)
        flag = self.flag.with_name(f"{self.flag.name}.rank{trainer.global_rank}")
        flag = flag if trainer.global_rank else self.flag
        if trainer.current_epoch != self.epoch or flag.exists():
            return
        flag.write_text(f"paused after epoch {self.epoch}\n")
        deadline = time.monotonic() + self.timeout_s
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.1)
