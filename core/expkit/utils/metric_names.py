"""What a logged metric's name says, whatever the module's naming: `val/loss`, `val_loss`,
`loss/val`, and Lightning's `_step`/`_epoch` suffixes (`self.log(..., on_step=True, on_epoch=True)`
logs `x_step` and `x_epoch`, and `trainer.callback_metrics` also holds `x`).

The template never assumes `stage/name`: a module's own names work in the monitor, the optimized
metric, the history table and its curves, the summaries, the runs table and Optuna's pruning. This
is the one place that reads a name; nothing here changes what a module logs.
"""

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")

#: the words that name a stage, wherever they sit in a name (first or last part)
STAGE_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
STEP, EPOCH = "_step", "_epoch"
#: how Lightning's LearningRateMonitor names what it logs (`lr-Adam`): the run's settings, not the
#: module's metrics (the history keeps the learning rate in its own `lr` columns)
LR_MONITOR = "lr-"
_PARTS = re.compile(r"[/_.\-]")


def _without_suffix(key: str) -> str:
    for suffix in (STEP, EPOCH):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def stage_of(key: str) -> str | None:
    """'train', 'val' or 'test' when the name says so (`val/loss`, `val_loss`, `loss/val`), else None."""
    parts = [p for p in _PARTS.split(_without_suffix(key).lower()) if p]
    if not parts:
        return None
    return STAGE_WORDS.get(parts[0]) or (STAGE_WORDS.get(parts[-1]) if len(parts) > 1 else None)


def base_name(key: str) -> str:
    """The name without its stage word and suffix: `val/loss`, `val_loss`, `loss/val` -> `loss`
    (the panel of the curves that metric is drawn in). A name without a stage is its own base."""
    plain = _without_suffix(key)
    stage = stage_of(key)
    if stage is None:
        return plain
    for word in (w for w, s in STAGE_WORDS.items() if s == stage):
        for sep in "/_.-":
            if plain.lower().startswith(word + sep):
                return plain[len(word) + 1 :] or plain
            if plain.lower().endswith(sep + word):
                return plain[: -len(word) - 1] or plain
    return plain


def is_step_value(key: str, keys: Iterable[str]) -> bool:
    """`x_step` when `x` or `x_epoch` is also logged: one step's value, not the epoch's."""
    if not key.endswith(STEP):
        return False
    base = key[: -len(STEP)]
    present = set(keys)
    return base in present or base + EPOCH in present


def epoch_values(metrics: Mapping[str, V]) -> dict[str, V]:
    """Each metric once, by its epoch value: `x_step` dropped where an epoch value exists, and
    `x_epoch` shown as `x` (Lightning's `callback_metrics` holds `x`, `x_step` and `x_epoch`);
    the LearningRateMonitor's `lr-*` left out."""
    out: dict[str, V] = {}
    for key, value in metrics.items():
        if key.startswith(LR_MONITOR) or is_step_value(key, metrics):
            continue
        if key.endswith(EPOCH) and len(key) > len(EPOCH):
            base = key[: -len(EPOCH)]
            if base in metrics:
                continue  # the same value under its plain name
            out[base] = value
        else:
            out[key] = value
    return out


def find(name: str | None, keys: Iterable[str]) -> str | None:
    """The key among `keys` that `name` means: itself, or with its `_epoch` suffix added or
    removed (`val_loss_epoch` names what `epoch_values` keeps as `val_loss`, and the reverse)."""
    if not name:
        return None
    present = set(keys)
    for candidate in (name, _without_suffix(name) if name.endswith(EPOCH) else name + EPOCH):
        if candidate in present:
            return candidate
    return None


def lookup(metrics: Mapping[str, V], name: str | None, default: V) -> V:
    key = find(name, metrics)
    return metrics[key] if key is not None else default


def is_metric_column(column: str) -> bool:
    """In a table of runs (config values as `a.b`, fields as words): a logged metric's column."""
    return "/" in column or stage_of(column) is not None


def lower_is_better(name: str) -> bool:
    """A guess for the hint in an error message: losses and errors go down, the rest up."""
    lowered = name.lower()
    return any(w in lowered for w in ("loss", "err", "mse", "mae", "rmse", "nll", "gap", "dist"))
