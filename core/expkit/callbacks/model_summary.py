"""A compact model summary at the start of fit: the network's modules with their parameter counts.

Lightning's summaries list every submodule, metric containers included (a classifier's
torchmetrics collections fill half the table with zeros), and a FLOPs column that stays 0 unless
the module defines an example input. Here only modules that hold parameters are listed, to
`max_depth` levels, under one line with the totals.
"""

import pytorch_lightning as pl
from pytorch_lightning.utilities.model_summary import get_human_readable_count
from torch import nn
from torch.nn.parameter import UninitializedParameter

from expkit.utils.logging_utils import get_logger
from expkit.callbacks.lifecycle import LifecyclePart

log = get_logger(__name__)


def _count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(
        p.numel()
        for p in module.parameters()
        if not isinstance(p, UninitializedParameter) and (p.requires_grad or not trainable_only)
    )


def model_summary_text(model: nn.Module, max_depth: int = 2) -> str:
    """`model Classifier: 21.9 K parameters (21.9 K trainable), 0.09 MB` and one row per module."""
    total, trainable = _count(model), _count(model, trainable_only=True)
    size_mb = (
        sum(
            p.numel() * p.element_size()
            for p in model.parameters()
            if not isinstance(p, UninitializedParameter)
        )
        / 1e6
    )
    rows = [
        (name, type(module).__name__, get_human_readable_count(_count(module)))
        for name, module in model.named_modules()
        if name and name.count(".") < max_depth and _count(module) > 0
    ]
    head = (
        f"model {type(model).__name__}: {get_human_readable_count(total)} parameters "
        f"({get_human_readable_count(trainable)} trainable), {size_mb:.2f} MB"
    )
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    body = [
        f"  {n.ljust(widths[0])}  {t.ljust(widths[1])}  {c.rjust(widths[2])}" for n, t, c in rows
    ]
    return "\n".join([head, *body])


class CompactModelSummary(LifecyclePart):
    """Logs `model_summary_text` once per fit, on rank zero (console and the run's log)."""

    def __init__(self, max_depth: int = 2) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("%s", model_summary_text(pl_module, self.max_depth))
