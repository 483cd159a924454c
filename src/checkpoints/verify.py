"""Check a loaded checkpoint against the run that will use it, before Lightning touches it.

- `check_compatible`: the weights fit the model key for key and shape for shape (Lightning would
  fail too, but only after setting everything up, with a long torch message).
- `check_stored_paths`: the file paths a checkpoint's callback states carry (ModelCheckpoint's
  best/last/top-k paths) lie inside the run's own directory. Lightning restores them on resume and
  later deletes the files they name when a better checkpoint replaces them: a crafted checkpoint
  must not choose which files get deleted or loaded.
"""

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.checkpoints.run_config import CHECKPOINT_KEY
from src.utils.errors import CheckpointError


def check_compatible(
    checkpoint: dict[str, Any],
    model: torch.nn.Module,
    path: str | Path,
    cfg: DictConfig | None = None,
) -> None:
    """The checkpoint's weights must fit `model` key for key and shape for shape.

    Lightning would fail too, but only after setting everything up, with a long torch message; this
    names the mismatch (and the model config that wrote the checkpoint) in one line.
    """
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not a Lightning training checkpoint (it has no 'state_dict'; top-level "
            f"keys: {sorted(map(str, checkpoint))[:8]}). Allowed: a .ckpt written by "
            "src/train.py (logs/<task>/runs/<run>/checkpoints/)."
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k}: checkpoint {list(state[k].shape)}, model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} weight(s) of the model missing from it ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} weight(s) the model does not have ({_few(unexpected)})")
    if reshaped:
        problems.append(f"{len(reshaped)} of another shape ({_few(reshaped)})")
    raise CheckpointError(
        f"{path} does not fit the model of this run{_which_models(checkpoint, cfg)}: "
        f"{'; '.join(problems)}. Allowed: a checkpoint written with the same model config "
        "(eval rebuilds it by itself when no model.* override is given)."
    )


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", …" if len(items) > n else "")


def _which_models(checkpoint: dict[str, Any], cfg: DictConfig | None) -> str:
    """' (model.net: <this run> vs <the checkpoint's>)' when both configs are known and differ."""
    run_config = checkpoint.get(CHECKPOINT_KEY)
    if cfg is None or not isinstance(run_config, dict):
        return ""
    ours = OmegaConf.select(cfg, "model.net")
    ours = OmegaConf.to_container(ours, resolve=True) if OmegaConf.is_config(ours) else None
    theirs = (run_config.get("model") or {}).get("net")
    if ours == theirs or not isinstance(ours, dict) or not isinstance(theirs, dict):
        return ""
    return f" (model.net here: {_brief(ours)}; in the checkpoint: {_brief(theirs)})"


def _brief(net: dict) -> str:
    skip = {"_target_", "input_shape", "num_classes"}
    extra = ", ".join(f"{k}={v}" for k, v in net.items() if k not in skip)
    return f"{str(net.get('_target_', '?')).rsplit('.', 1)[-1]}({extra})"


def _stored_paths(node: Any, where: str) -> list[tuple[str, str]]:
    """(key, path) of every string under a key naming a path, or a key of a `*_models` dict."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if isinstance(key, str) and key.endswith("_models") and isinstance(value, dict):
                found += [(here, str(k)) for k in value]
            if isinstance(key, str) and key.endswith("path") and isinstance(value, str) and value:
                found.append((here, value))
            else:
                found += _stored_paths(value, here)
    return found


def _inside(path: str, root: Path) -> bool:
    target = Path(path).resolve()
    return target == root or root in target.parents


def check_stored_paths(checkpoint: dict[str, Any], path: str | Path, run_dir: str | Path) -> None:
    """A callback state whose `dirpath` is in `run_dir` must keep every stored path in `run_dir`.

    Lightning restores a ModelCheckpoint's top-k and last paths only when its stored `dirpath` is
    the current one (a run resumed where it was written); those are the paths it later deletes.
    A run directory that was moved keeps its old `dirpath`, so Lightning restores none of them.
    """
    root = Path(run_dir).resolve()
    for name, state in (checkpoint.get("callbacks") or {}).items():
        dirpath = state.get("dirpath") if isinstance(state, dict) else None
        if not isinstance(dirpath, str) or not _inside(dirpath, root):
            continue
        for key, stored in _stored_paths(state, f"callbacks.{name}"):
            if "://" not in stored and not _inside(stored, root):
                raise CheckpointError(
                    f"{path}: {key}={stored!r} points outside its run directory {root}; Lightning "
                    "would load or delete that file. Allowed: checkpoints whose stored paths lie "
                    "inside their own run (as train.py writes them)."
                )
