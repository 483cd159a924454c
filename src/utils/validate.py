"""One early check of the values that libraries would reject late (after data loading) or never.

Hydra already rejects unknown group options and misspelled keys (the configs are in struct mode);
this module covers the values inside the keys.
"""

from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig

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


def _available_devices(accelerator: str) -> int | None:
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    return None  # cpu: Lightning simulates any number of processes


def _check_devices(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    accelerator, devices = trainer.get("accelerator", "auto"), trainer.get("devices", "auto")
    if accelerator in ("gpu", "cuda", "mps"):
        available = _available_devices(accelerator)
        if available == 0:
            raise ConfigError(
                f"trainer.accelerator={accelerator!r} but this machine has no {accelerator.upper()} "
                "device. Allowed here: trainer=cpu (or trainer=default, which picks what exists)."
            )
        if isinstance(devices, int) and not isinstance(devices, bool) and devices > available:
            raise ConfigError(
                f"trainer.devices={devices} but this machine has {available} {accelerator.upper()} "
                f"device(s). Allowed: 1..{available}, -1 or 'auto' (all of them)."
            )
    if (
        isinstance(devices, int)
        and not isinstance(devices, bool)
        and devices == 0
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
