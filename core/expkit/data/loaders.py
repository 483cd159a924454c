"""A datamodule's own data, reached through the LightningDataModule API alone (predict, export).

Any `LightningDataModule` works: `setup(stage)`, its `*_dataloader()` methods and its batch hooks
(`on_before_batch_transfer`, `on_after_batch_transfer`: e.g. our in-memory datamodules normalize
there). Nothing here reads attributes of ours (`splits`, `normalize`), so the Lightning tutorial's
`MNISTDataModule` (torchvision datasets, `random_split`, its own loaders) serves as well as ours.

A split name means that dataloader: `predict` is the datamodule's `predict_dataloader` when it
defines one, else its `test_dataloader`; `train` and `val` are set up with stage `fit` (what
Lightning's own loops do), `test` with `test`.
"""

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch import Tensor

from expkit.errors import ConfigError

SPLITS = ("predict", "test", "val", "train")
_STAGES = {"predict": "predict", "test": "test", "val": "fit", "train": "fit"}


def split_loader(datamodule: pl.LightningDataModule, name: str) -> tuple[str, Iterable]:
    """`(the split that runs, its dataloader)`; `predict` falls back to `test` when the datamodule
    has no `predict_dataloader`."""
    if name == "predict" and not is_overridden("predict_dataloader", datamodule):
        name = "test"
    if not is_overridden(f"{name}_dataloader", datamodule):
        raise ConfigError(
            f"input={name}: {type(datamodule).__name__} has no {name}_dataloader(). Allowed: a "
            f"split it has ({', '.join(s for s in SPLITS if _has(datamodule, s))}), a folder "
            "of images, one image, or a tensor file."
        )
    datamodule.setup(_STAGES[name])
    return name, getattr(datamodule, f"{name}_dataloader")()


def _has(datamodule: pl.LightningDataModule, split: str) -> bool:
    return is_overridden(f"{split}_dataloader", datamodule)


def batch_inputs(batch: Any) -> Any:
    """What a module's `forward` takes from a batch: `x` of `(x, y, ...)`, else the batch itself
    (Lightning's convention; a dict batch stays a dict)."""
    return batch[0] if isinstance(batch, list | tuple) and batch else batch


def batch_targets(batch: Any) -> Tensor | None:
    """The targets of an `(x, y)` batch when they are one value per sample, else None."""
    if not isinstance(batch, list | tuple) or len(batch) < 2:
        return None
    x, y = batch[0], batch[1]
    if not isinstance(y, Tensor) or y.dim() != 1 or not isinstance(x, Tensor) or len(x) != len(y):
        return None
    return y


def as_module_sees_it(datamodule: pl.LightningDataModule, batch: Any) -> Any:
    """A batch through the datamodule's batch hooks, on the CPU (what `trainer.predict` does)."""
    batch = datamodule.on_before_batch_transfer(batch, 0)
    return datamodule.on_after_batch_transfer(batch, 0)


def input_samples(datamodule: pl.LightningDataModule, count: int) -> tuple[str, Tensor]:
    """`(split, at least min(count, all) samples of the inputs)` from the datamodule's predict
    (else test) batches, as the module sees them; a dict or non-tensor input is refused."""
    name, loader = split_loader(datamodule, "predict")
    chunks: list[Tensor] = []
    for batch in loader:
        x = batch_inputs(as_module_sees_it(datamodule, batch))
        if not isinstance(x, Tensor):
            raise ConfigError(
                f"{type(datamodule).__name__}'s {name} batches give the model a "
                f"{type(x).__name__}, not a tensor; declare the module's example_input_array "
                "(a tensor or a tuple of tensors) to export it."
            )
        chunks.append(x.detach().cpu())
        if sum(len(c) for c in chunks) >= count:
            break
    if not chunks:
        raise ConfigError(f"{type(datamodule).__name__}'s {name}_dataloader() yields no batch.")
    return name, torch.cat(chunks)[:count]
