"""The alias table: `_target_` names that runs written by earlier versions stored, and their names now.

Checkpoints and run directories keep the resolved config of their run, `_target_`s included. When a
class moves (the machinery moved from the template's `src/` into this library in 1.0.0), the old
name must keep working, but only as an alias: an old name is rewritten to the current one, and the
current one is then checked by the trust policy like any other target (`target_policy.py`). A name
that is in neither this table nor the configs stays refused. Add a row whenever a released
`_target_` moves or is renamed; never remove one.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig

# old name (as stored) -> current name; see CHANGELOG.md for the release that moved each
ALIASES: dict[str, str] = {
    # 1.0.0: the machinery moved from the template's src/ into the library
    "src.callbacks.finite_loss.StopOnNonFiniteLoss": "expkit.callbacks.finite_loss.StopOnNonFiniteLoss",
    "src.callbacks.history.History": "expkit.callbacks.history.History",
    "src.callbacks.inject_nan.InjectNaN": "expkit.callbacks.inject_nan.InjectNaN",
    "src.callbacks.interrupt_checkpoint.InterruptCheckpoint": "expkit.callbacks.interrupt_checkpoint.InterruptCheckpoint",
    "src.callbacks.model_summary.CompactModelSummary": "expkit.callbacks.model_summary.CompactModelSummary",
    "src.callbacks.optuna_pruning.OptunaPruning": "expkit.callbacks.optuna_pruning.OptunaPruning",
    "src.callbacks.progress_bar.ThrottledRichProgressBar": "expkit.callbacks.progress_bar.ThrottledRichProgressBar",
    "src.callbacks.rng_state.RngStateInCheckpoint": "expkit.callbacks.rng_state.RngStateInCheckpoint",
    "src.data.digits.DigitsDataModule": "expkit.data.digits.DigitsDataModule",
    "src.data.image_folder.ImageFolderDataModule": "expkit.data.image_folder.ImageFolderDataModule",
    "src.data.table.TableDataModule": "expkit.data.table.TableDataModule",
    "src.loggers.continued.ContinuedCSVLogger": "expkit.loggers.continued.ContinuedCSVLogger",
    "src.loggers.continued.ContinuedTensorBoardLogger": "expkit.loggers.continued.ContinuedTensorBoardLogger",
    "src.loggers.offline.LocalMLFlowLogger": "expkit.loggers.offline.LocalMLFlowLogger",
    "src.loggers.offline.OwnRunWandbLogger": "expkit.loggers.offline.OwnRunWandbLogger",
    "src.sweeps.lock.SweepLock": "expkit.sweeps.lock.SweepLock",
    "src.sweeps.summary.SweepSummary": "expkit.sweeps.summary.SweepSummary",
}


def current_name(target: str) -> str:
    """The name a stored target has now (itself when it never moved); follows chains of moves."""
    seen = {target}
    while target in ALIASES:
        target = ALIASES[target]
        if target in seen:  # a cycle would be a bug in the table: stop rather than loop
            break
        seen.add(target)
    return target


def _raw(node: Any, key: Any) -> Any:
    """The value at `key` as stored (an interpolation stays its text; nothing is resolved)."""
    if not isinstance(node, DictConfig):
        return node[key]
    child = node._get_node(key)
    return None if child is None else child._value()


def apply_aliases(node: Any) -> list[tuple[str, str]]:
    """Rewrite, in place, every aliased `_target_` in a config read from elsewhere.

    Returns the `(old, new)` pairs rewritten. Interpolations are left alone (they are resolved, and
    so checked, by the trust policy).
    """
    rewritten: list[tuple[str, str]] = []
    if isinstance(node, DictConfig | dict):
        keys = list(node.keys())
        for key in keys:
            if key == "_target_":
                value = _raw(node, key)
                if isinstance(value, str) and current_name(value) != value:
                    node[key] = current_name(value)
                    rewritten.append((value, node[key]))
            else:
                child = node._get_node(key) if isinstance(node, DictConfig) else node[key]
                if isinstance(child, DictConfig | ListConfig | dict | list):
                    rewritten += apply_aliases(child)
    elif isinstance(node, ListConfig | list):
        for i in range(len(node)):
            child = node._get_node(i) if isinstance(node, ListConfig) else node[i]
            if isinstance(child, DictConfig | ListConfig | dict | list):
                rewritten += apply_aliases(child)
    return rewritten
