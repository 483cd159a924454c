"""Stores the run's resolved config in every checkpoint, so a checkpoint alone rebuilds its run.

Lightning saves the module's hyperparameters but not the data, trainer or optimizer config;
`eval.py ckpt_path=…` needs all of it. Kept as a plain dict: the checkpoint stays loadable with
`torch.load(weights_only=True)`.
"""

from typing import Any

import pytorch_lightning as pl

CHECKPOINT_KEY = "run_config"


class RunConfigInCheckpoint(pl.Callback):
    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = run_config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.run_config
