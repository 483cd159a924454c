"""What a checkpoint restores into the callbacks: paths only inside the run, settings as typed now.

Lightning restores every callback's state from the checkpoint it resumes (`resume=`, a requeue,
`train.py ckpt_path=…`). That state is data from a file, and two parts of it act:

- Paths. ModelCheckpoint restores `best_model_path`, `kth_best_model_path`, `last_model_path`,
  `best_k_models` (and compares `dirpath`), then *deletes* the files they name when better
  checkpoints replace them, and tests the one `best_model_path` names. Before any callback loads
  its state, every stored path of every callback (keys ending in `path`, `dir`, `file`,
  `filename`, `uri`, `url`, the keys of `*_models` dicts, and any absolute path or URI under any
  other name) that is not inside this run's directory is dropped with a warning (a string becomes
  "", a dict entry is removed): nothing outside the run is ever loaded or deleted because a
  checkpoint said so. A run directory that was moved or copied keeps its own files: a path in the
  state's old `dirpath` whose file is at the same place under `<run>/checkpoints` is re-derived
  there (a regular file inside the run, never a symlink).
- Settings. EarlyStopping restores `patience` over the value configured now. After the restore,
  every attribute of a callback that is one of its constructor's arguments (`patience`,
  `min_delta`, `mode`, `save_top_k`, `monitor`, …) and that the restore changed is set back to the
  configured value: what the user typed (or the run's config says) now wins over the checkpoint.
  Counters and scores (`wait_count`, `best_score`) are state, not settings: they are kept.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from expkit.utils.logging_utils import get_logger
from expkit.callbacks.lifecycle import LifecyclePart, each_callback

log = get_logger(__name__)

_PATH_KEY = re.compile(r"(?:path|dir|dirs|dirpath|file|filename|uri|url)$")
_MISSING = object()


def _inside(path: str, root: Path) -> bool:
    if "://" in path or "\0" in path:
        return False
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return target == root or root in target.parents


def _looks_like_a_path(text: str) -> bool:
    return text.startswith(("/", "~", "file:")) or "://" in text


def _in_moved_run(path: str, state: dict, root: Path) -> str | None:
    """The same file in this run, for a run directory that was moved or copied: `path` lies in the
    state's old `dirpath`, and that file, at the same place relative to `<run>/checkpoints`, is a
    regular file inside the run. None otherwise."""
    old = state.get("dirpath")
    if not isinstance(old, str) or not old or "://" in path:
        return None
    try:
        relative = Path(path).relative_to(old)
    except ValueError:
        return None
    here = root / "checkpoints" / relative
    if (
        ".." in relative.parts
        or not here.is_file()
        or here.is_symlink()
        or not _inside(str(here), root)
    ):
        return None
    return str(here)


def drop_foreign_paths(node: Any, root: Path, where: str, dropped: list[str]) -> Any:
    """`node` with every stored path outside `root` removed; `dropped` gets `key=path` of each."""
    if isinstance(node, list):
        return [drop_foreign_paths(v, root, f"{where}[{i}]", dropped) for i, v in enumerate(node)]
    if isinstance(node, str) and _looks_like_a_path(node) and not _inside(node, root):
        dropped.append(f"{where}={node!r}")  # a path under any name (a list of files, …)
        return ""
    if not isinstance(node, dict):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        here = f"{where}.{key}"
        name = str(key)
        if name.endswith("_models") and isinstance(value, dict):
            kept = {}
            for k, v in value.items():
                if isinstance(k, str) and _inside(k, root):
                    kept[k] = v
                else:
                    dropped.append(f"{here}[{k!r}]")
            out[key] = kept
        elif _PATH_KEY.search(name) and isinstance(value, str) and value:
            if _inside(value, root):
                out[key] = value
            elif name != "dirpath" and (moved := _in_moved_run(value, node, root)) is not None:
                out[key] = moved
            else:
                out[key] = ""
                dropped.append(f"{here}={value!r}")
        elif _PATH_KEY.search(name) and isinstance(value, list | tuple):
            kept_items = [v for v in value if isinstance(v, str) and _inside(v, root)]
            if len(kept_items) != len(value):
                dropped.append(f"{here}={list(value)!r}")
            out[key] = kept_items
        else:
            out[key] = drop_foreign_paths(value, root, here, dropped)
    return out


def _settings(callback: pl.Callback) -> dict[str, Any]:
    """The callback's attributes that are arguments of its constructor (what a config sets)."""
    try:
        names = inspect.signature(type(callback).__init__).parameters
    except (TypeError, ValueError):
        return {}
    values = {}
    for name in names:
        value = getattr(callback, name, _MISSING)
        if name != "self" and value is not _MISSING and not callable(value):
            values[name] = value
    return values


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # e.g. tensors of other shapes
        return a is not b


class RestoredStateGuard(LifecyclePart):
    """Keeps restored callback state inside `run_dir` and the configured settings in force."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self._configured: list[tuple[pl.Callback, dict[str, Any]]] = []

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # runs for every callback before any of them loads its state
        states = checkpoint.get("callbacks")
        if isinstance(states, dict):
            dropped: list[str] = []
            for key in list(states):
                states[key] = drop_foreign_paths(states[key], self.run_dir, str(key), dropped)
            if dropped:
                log.warning(
                    "Checkpoint state naming files outside the run directory %s dropped "
                    "(nothing there is loaded or deleted): %s",
                    self.run_dir,
                    "; ".join(dropped),
                )
        self._configured = [
            (c, _settings(c)) for c in each_callback(trainer.callbacks) if c is not self
        ]

    def _reapply(self) -> None:
        for callback, settings in self._configured:
            for name, value in settings.items():
                restored = getattr(callback, name, _MISSING)
                if restored is not _MISSING and _differs(restored, value):
                    setattr(callback, name, value)
                    log.info(
                        "%s.%s: the configured %r, not the checkpoint's %r.",
                        type(callback).__name__,
                        name,
                        value,
                        restored,
                    )
        self._configured = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reapply()  # restored before fit start (the usual strategies)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reapply()  # restored after fit start (strategies that restore after setup)
