"""Random-number-generator states in every checkpoint, so a resumed run draws the same numbers.

Lightning restores weights, optimizer, schedulers, loops and callbacks, but not the RNGs: after a
resume, dropout masks and batch augmentation would differ from an uninterrupted run with the same
seed. Lightning's own helpers for this (`lightning_fabric.utilities.seed._collect_rng_states`) are
private and return a numpy array, which `torch.load(weights_only=True)` refuses; here every state
is a tensor or a plain container, so checkpoints keep loading safely.

The states are captured when a checkpoint is written (end of a training epoch for `last.ckpt`) and
put back when the first training epoch after a restore starts: the point where the uninterrupted
run would go on drawing from them. Under DDP, rank 0's states are saved and every rank gets them
back (all ranks are seeded alike and draw the same amounts, so their states agree).
"""

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from expkit.utils.logging_utils import get_logger
from expkit.callbacks.lifecycle import LifecyclePart

log = get_logger(__name__)


def collect_rng_states() -> dict[str, Any]:
    """The states of Python's, numpy's, torch's CPU and (if initialised) every CUDA generator."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    states: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of `collect_rng_states`; CUDA states are skipped when the device count changed."""
    version, mt_state, gauss = states["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    cuda_states = states.get("torch.cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning(
                "The checkpoint holds RNG states of %d CUDA device(s), this machine has %d: "
                "CUDA random numbers (dropout on GPU) will differ from the original run.",
                len(cuda_states),
                torch.cuda.device_count(),
            )


class RngStateInCheckpoint(LifecyclePart):
    """Saves the RNG states with each checkpoint; restores them when training resumes from one."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng_states")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None
