"""Read a checkpoint safely (tensors and plain containers only) and rebuild its run's config."""

import pickle
import re
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
    """`torch.load(weights_only=True)`: a checkpoint whose pickle would run code is refused, never run.

    Zip checkpoints (what Lightning writes) are memory-mapped, so checking one before Lightning
    loads it again costs little memory.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} does not exist (looked in {path.resolve()}).")
    try:
        mmap = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\. |\n|$)", str(err))
        detail = found.group(1) if found else "not a tensor or plain container"
        raise CheckpointError(
            f"Refusing to load {path}: it holds objects other than tensors and plain containers "
            f"({detail}), and unpickling them could run code. Allowed: checkpoints written by "
            "src/train.py, which hold only tensors and plain containers."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).split(". ")[0].splitlines()[0]
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (truncated, or not written by torch.save): "
            f"{reason}. Allowed: a complete .ckpt written by src/train.py."
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
    if ours == theirs or ours is None or theirs is None:
        return ""
    return f" (model.net here: {_brief(ours)}; in the checkpoint: {_brief(theirs)})"


def _brief(net: dict) -> str:
    skip = {"_target_", "input_shape", "num_classes"}
    extra = ", ".join(f"{k}={v}" for k, v in net.items() if k not in skip)
    return f"{str(net.get('_target_', '?')).rsplit('.', 1)[-1]}({extra})"
