"""Check a loaded checkpoint against the run that will use it, before Lightning touches it.

- `check_compatible`: the weights fit the model key for key and shape for shape (Lightning would
  fail too, but only after setting everything up, with a long torch message).
(The paths a checkpoint's callback states carry are kept inside the run by
`expkit.callbacks.restored_state`, when Lightning restores them.)
"""

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from expkit.checkpoints.run_config import CHECKPOINT_KEY
from expkit.errors import CheckpointError


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
