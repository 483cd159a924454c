"""Which metric a sweep optimizes and in which direction, from its config or from its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from expkit.sweeps.jobs import find_job_dirs

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def _plain_yaml(path: Path) -> dict[str, Any]:
    """A file of the sweep as plain YAML (never resolved: it is data); {} when unusable."""
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _merged(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for key, value in other.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def _no_interpolation(node: Any) -> Any:
    """`node` without the values that hold `${…}` (dropped, never resolved)."""
    if isinstance(node, dict):
        return {
            k: _no_interpolation(v)
            for k, v in node.items()
            if "${" not in str(v) or isinstance(v, dict | list)
        }
    if isinstance(node, list):
        return [
            _no_interpolation(v) for v in node if "${" not in str(v) or isinstance(v, dict | list)
        ]
    return node


def settings_from_files(sweep_dir: Path) -> Settings:
    """The same, read from what a sweep leaves on disk (multirun.yaml, or a job's saved config).

    Those files are data: read as plain YAML, an interpolation in them is ignored, never resolved."""
    candidates = [sweep_dir / "multirun.yaml"]
    for job in find_job_dirs(sweep_dir)[:1]:
        candidates.append(job / ".hydra" / "config.yaml")
        candidates.append(job / ".hydra" / "hydra.yaml")
    merged: dict[str, Any] = {}
    for path in candidates:
        merged = _merged(merged, _plain_yaml(path))
    try:
        return sweep_settings(OmegaConf.create(_no_interpolation(merged)))
    except Exception:  # a value of the wrong type
        return Settings()
