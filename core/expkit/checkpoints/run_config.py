"""The run's resolved config inside every checkpoint: the writer (a callback) and the reader together.

Lightning saves the module's hyperparameters but not the data, trainer or optimizer config;
`eval.py ckpt_path=…` needs all of it. Kept as a plain dict, so the checkpoint stays loadable with
`torch.load(weights_only=True)`. What the reader returns is data: before anything is built from
it, `expkit.checkpoints.target_policy` checks every `_target_` it names.
"""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from expkit.errors import CheckpointError
from expkit.callbacks.lifecycle import LifecyclePart

CHECKPOINT_KEY = "run_config"


class RunConfigInCheckpoint(LifecyclePart):
    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = run_config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.run_config


def read_run_config(checkpoint: dict[str, Any], path: str | Path) -> DictConfig:
    """The resolved config the run stored in its checkpoint."""
    config = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} carries no run config (key {CHECKPOINT_KEY!r}): it was not written by this "
            "template's train.py, so its model and data cannot be rebuilt from it alone."
        )
    try:
        return OmegaConf.create(config)
    except Exception as err:  # keys or values OmegaConf cannot hold
        raise CheckpointError(
            f"{path}: its stored run config is not a valid config ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'})."
        ) from None
