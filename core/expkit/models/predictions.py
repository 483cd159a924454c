"""Run a module's `predict_step` over the inputs with `trainer.predict`, and gather what it returns.

Whatever the module is: Lightning calls its `predict_step` (its default calls `forward` on the
batch) on each batch exactly as the datamodule yields it, after the datamodule's batch hooks, so a
split is predicted as it is tested. Inputs read from files arrive as bare batch tensors. One
device, one process, rows in input order, whatever strategy the run was trained with.

`predict_step` may return, per batch, a tensor, a dict of tensors or a tuple/list of tensors, each
with one row per sample (first dimension = the batch's size); they are gathered on the CPU as
`{name: N×…}` (`output` for a tensor, the dict's keys, `output_0…` for a sequence).
"""

from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from expkit.data.loaders import batch_inputs, batch_targets
from expkit.data.predict_inputs import PredictInputs
from expkit.errors import ConfigError
from expkit.utils.devices import resolve_accelerator


@dataclass
class Predictions:
    """One row per input: its id, every output of `predict_step`, and its target where known."""

    ids: list[str]
    outputs: dict[str, Tensor]
    targets: Tensor | None = None


def named_outputs(value: Any, where: str) -> dict[str, Tensor]:
    """`predict_step`'s return value as `{name: tensor}` (see the module docstring)."""
    if isinstance(value, Tensor):
        return {"output": value}
    if isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tensor) for v in value):
        return {f"output_{i}": v for i, v in enumerate(value)}
    shown = type(value).__name__ if not isinstance(value, dict | list | tuple) else repr(value)[:80]
    raise ConfigError(
        f"predict_step returned {shown} for {where}; allowed: a tensor, a dict of tensors or a "
        "tuple of tensors, one row per sample."
    )


class _Collector(pl.Callback):
    """Keeps each batch's outputs (on the CPU) and its targets, as the batches come."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Tensor]] = []
        self.targets: list[Tensor | None] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        where = f"batch {batch_idx}"
        named = named_outputs(outputs, where)
        inputs = batch_inputs(batch)
        size = len(inputs) if isinstance(inputs, Tensor) and inputs.dim() > 0 else None
        for name, value in named.items():
            if value.dim() == 0 or (size is not None and len(value) != size):
                raise ConfigError(
                    f"predict_step returned {name!r} of shape {list(value.shape)} for {where} of "
                    f"{size} samples; allowed: one row per sample (first dimension {size})."
                )
        self.outputs.append({k: v.detach().cpu() for k, v in named.items()})
        targets = batch_targets(batch)
        self.targets.append(None if targets is None else targets.detach().cpu())


def _gather(collector: _Collector) -> tuple[dict[str, Tensor], Tensor | None]:
    if not collector.outputs:
        return {}, None
    names = list(collector.outputs[0])
    for i, batch in enumerate(collector.outputs):
        if list(batch) != names:
            raise ConfigError(
                f"predict_step returned outputs {list(batch)} for batch {i}, {names} for batch 0; "
                "allowed: the same outputs for every batch."
            )
    outputs = {name: torch.cat([b[name] for b in collector.outputs]) for name in names}
    known = all(t is not None for t in collector.targets)
    targets = torch.cat([t for t in collector.targets if t is not None]) if known else None
    return outputs, targets


def predict(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    inputs: PredictInputs,
    accelerator: str,
    batch_size: int,
) -> Predictions:
    """`trainer.predict` on one device: a split through the datamodule (its hooks run), files as
    batches of `batch_size`."""
    collector = _Collector()
    trainer = pl.Trainer(
        accelerator=resolve_accelerator(accelerator),
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[collector],
    )
    if inputs.kind == "split":
        _predict_split(trainer, model, datamodule, inputs.loader)
    else:
        assert inputs.samples is not None
        loader: DataLoader = DataLoader(inputs.samples, batch_size=batch_size, shuffle=False)
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    outputs, targets = _gather(collector)
    count = len(next(iter(outputs.values()))) if outputs else 0
    ids = inputs.ids if inputs.kind != "split" else [f"{inputs.name}/{i}" for i in range(count)]
    return Predictions(ids, outputs, targets)


def _predict_split(trainer: pl.Trainer, model, datamodule, loader) -> None:
    """The split's loader served as the datamodule's predict loader, so that its batch hooks run
    and `trainer.datamodule` is the datamodule (modules read it in `setup`)."""
    had_own = "predict_dataloader" in vars(datamodule)
    previous = vars(datamodule).get("predict_dataloader")
    datamodule.predict_dataloader = lambda: loader
    try:
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    finally:
        if had_own:
            datamodule.predict_dataloader = previous
        else:
            del datamodule.predict_dataloader
