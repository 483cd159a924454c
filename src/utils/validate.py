"""One early check of the values that libraries would reject late (after data loading) or never.

Hydra already rejects unknown group options and misspelled keys (the configs are in struct mode);
this module covers the values inside the keys.
"""

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from src.utils.errors import ConfigError


def _require_positive(cfg: DictConfig, key: str, allow: Iterable = ()) -> None:
    value = _select(cfg, key)
    if value is None or value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        extra = f" (or one of {list(allow)})" if allow else ""
        raise ConfigError(f"{key}={value!r} is not allowed: it must be a number > 0{extra}.")


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node[part]
    return node


def _resolve_accelerator(accelerator: str) -> str:
    """What Lightning's `accelerator: auto` picks on this machine."""
    if accelerator != "auto":
        return accelerator
    if torch.cuda.is_available():
        return "gpu"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def _available_devices(accelerator: str) -> int:
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    # cpu: one process per device, at most one per core this process may use
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_devices(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    accelerator, devices = trainer.get("accelerator", "auto"), trainer.get("devices", "auto")
    kind = _resolve_accelerator(accelerator)
    available = _available_devices(kind)
    if kind in ("gpu", "cuda", "mps") and available == 0:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but this machine has no {kind.upper()} "
            "device. Allowed here: trainer=cpu (or trainer=default, which picks what exists)."
        )
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > available:
        unit = "CPU core(s)" if kind == "cpu" else f"{kind.upper()} device(s)"
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {available} {unit}"
            f"{f' (trainer.accelerator=auto picks {kind})' if accelerator == 'auto' else ''}. "
            f"Allowed: 1..{available}, -1 or 'auto' (all of them)."
        )
    if (
        isinstance(devices, int)
        and not isinstance(devices, bool)
        and (devices == 0 or devices < -1)
        or devices in ([], "")
    ):
        raise ConfigError(
            f"trainer.devices={devices!r} is not allowed: use a count >= 1, -1 or 'auto'."
        )


def _check_sync_batchnorm(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU kernel); "
            "allowed with trainer.accelerator=cpu: false."
        )


def _check_ckpt_path(cfg: DictConfig) -> None:
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} does not exist (looked in {Path(ckpt_path).resolve()}). "
            "Pass the path of a .ckpt file, e.g. logs/train/runs/<run>/checkpoints/last.ckpt."
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` for the first bad value found; do nothing for a good config."""
    _require_positive(cfg, "data.batch_size")
    _require_positive(cfg, "optimizer.lr")
    _require_positive(cfg, "trainer.max_epochs", allow=(-1,))
    _require_positive(cfg, "trainer.max_steps", allow=(-1,))
    _check_devices(cfg)
    _check_sync_batchnorm(cfg)
    _check_ckpt_path(cfg)


def validate_monitor(monitor: str | None, logged_metrics: Iterable[str], where: str) -> None:
    """A monitored metric that is never logged makes Lightning fail after the first epoch."""
    logged = sorted(logged_metrics)
    if monitor is not None and monitor not in logged:
        raise ConfigError(
            f"{where}={monitor!r} is never logged by this model. Allowed: {', '.join(logged)}."
        )


@rank_zero_only
def check_data_available(datamodule) -> None:
    """Missing dataset files (with no network to download them) fail here, before the trainer or a
    logger writes anything, instead of inside `trainer.fit`.

    `prepare_data` is the hook Lightning calls once per node to download; called here first (by
    rank 0), Lightning's own call then finds the files or the decoded cache and returns at once.
    """
    prepare = getattr(datamodule, "prepare_data", None)
    if callable(prepare):
        prepare()
