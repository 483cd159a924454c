"""Read a checkpoint safely (tensors and plain containers only) and rebuild its run's config."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.callbacks.run_config import CHECKPOINT_KEY
from src.utils.errors import CheckpointError, ConfigError

#: the keys that define *what* a run computes; eval takes them from the checkpoint
RUN_KEYS = ("seed", "data", "model", "optimizer", "scheduler", "trainer", "monitor")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)`: a checkpoint whose pickle would run code is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} does not exist (looked in {path.resolve()}).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Refusing to load {path}: it holds objects other than tensors and plain containers, "
            f"and unpickling them could run code. torch said: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (truncated or another format): {err}"
        ) from None


def run_config_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> DictConfig:
    """The resolved config the run stored in its checkpoint (see `RunConfigInCheckpoint`)."""
    config = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} carries no run config (key {CHECKPOINT_KEY!r}): it was not written by this "
            "template's train.py, so its model and data cannot be rebuilt from it alone."
        )
    return OmegaConf.create(config)


def merge_for_eval(run_cfg: DictConfig, eval_cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The checkpoint's run keys + this invocation's own keys + what the user typed, in that order.

    Command-line overrides were already validated and composed by Hydra into `eval_cfg`; the value
    at each overridden key is copied from there, so `data.batch_size=64` and `trainer=gpu` both work.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged = OmegaConf.to_container(eval_cfg, resolve=False)
    merged.update({key: _plain(run_cfg[key]) for key in RUN_KEYS if key in run_cfg})
    merged = OmegaConf.create(merged)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group.lstrip("~+")
        if key.startswith("hydra") or key not in _overridable(merged, key):
            continue
        value = _plain(OmegaConf.select(eval_cfg, key, default=None))
        OmegaConf.update(merged, key, value, merge=False, force_add=True)
    return merged


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def _overridable(cfg: DictConfig, key: str) -> set[str]:
    root = key.split(".", 1)[0]
    return {key} if root in RUN_KEYS else set()
