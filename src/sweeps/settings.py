"""Which metric a sweep optimizes and in which direction, from its config or from its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.sweeps.jobs import find_job_dirs


def _mode_from_direction(direction: Any) -> str | None:
    if isinstance(direction, list | tuple) or OmegaConf.is_list(direction):
        direction = direction[0] if len(direction) else None
    name = str(getattr(direction, "name", direction) or "").lower()
    return {"maximize": "max", "minimize": "min"}.get(name)


@dataclass
class Settings:
    """What a summary needs to know about its sweep beyond the job directories."""

    metric: str | None = None  # the optimized metric
    mode: str = "max"
    log_x: tuple[str, ...] = ()  # Optuna parameters sampled on a log scale: tag(log, ...)


def sweep_settings(config: DictConfig) -> Settings:
    """Settings of a composed config: the metric is `optimized_metric`; its direction is the
    sweeper's (Optuna) if it has one, else `monitor.mode`."""
    metric = OmegaConf.select(config, "optimized_metric", default=None)
    mode = _mode_from_direction(OmegaConf.select(config, "hydra.sweeper.direction", default=None))
    mode = mode or OmegaConf.select(config, "monitor.mode", default=None) or "max"
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    log_x = tuple(str(k) for k, v in params.items() if "tag(" in str(v) and "log" in str(v))
    return Settings(metric, mode, log_x)


def settings_from_files(sweep_dir: Path) -> Settings:
    """The same, read from what a sweep leaves on disk (multirun.yaml, or a job's saved config)."""
    candidates = [sweep_dir / "multirun.yaml"]
    for job in find_job_dirs(sweep_dir)[:1]:
        candidates.append(job / ".hydra" / "config.yaml")
        candidates.append(job / ".hydra" / "hydra.yaml")
    merged: Any = OmegaConf.create()
    for path in candidates:
        if path.is_file():
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    try:
        return sweep_settings(merged)
    except Exception:  # an interpolation only a live Hydra run can resolve
        return Settings()
