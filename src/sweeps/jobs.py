"""What the jobs of a sweep left on disk, read back: job directories, their overrides, their results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.run.record import RESULTS_FILE, RunRecord
from src.run.resume_args import OVERRIDES_FILE


def _job_sort_key(path: Path) -> tuple[int, int | str]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Job directories of a sweep: its sub-directories holding results.json or Hydra's overrides."""
    jobs = [
        p
        for p in Path(sweep_dir).iterdir()
        if p.is_dir() and ((p / RESULTS_FILE).is_file() or (p / OVERRIDES_FILE).is_file())
    ]
    return sorted(jobs, key=_job_sort_key)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["optimizer.lr=0.01", "model=cnn"]` → `{"optimizer.lr": 0.01, "model": "cnn"}`, typed as
    Hydra types them (lists and dicts kept as their text)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed: dict[str, Any] = {}
    for text in overrides:
        try:
            override = parser.parse_override(text)
            key, value = override.get_key_element(), override.value()
            if not isinstance(value, str | int | float | bool | type(None)):
                value = override.get_value_element_as_str()
        except Exception:  # not Hydra's syntax (a hand-edited file): keep it as text
            key, _, value = text.partition("=")
        parsed[key] = value
    return parsed


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job as a flat dict: job, overrides, status, error, wall time, run_dir, every metric."""
    overrides_path = job_dir / OVERRIDES_FILE
    overrides = list(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
    row: dict[str, Any] = {"job": job_dir.name, "overrides": [str(o) for o in overrides]}
    try:
        record = RunRecord.read(job_dir / RESULTS_FILE)
    except FileNotFoundError:
        row.update(status="missing", error="no results.json (still running, or killed)")
        row["run_dir"] = str(job_dir)
        return row
    except (OSError, ValueError) as err:
        row.update(status="unreadable", error=f"results.json unreadable: {err}")
        row["run_dir"] = str(job_dir)
        return row
    error = record.error
    row.update(
        status=record.status,
        error=f"{error.get('type')}: {error.get('message')}" if error else None,
        wall_time_s=record.total_wall_time_s
        or record.wall_time_s,  # every attempt of a requeued job
        run_dir=record.output_dir or str(job_dir),
    )
    for key, value in (record.metrics or {}).items():
        try:
            row[key] = float(value)  # "nan"/"inf" strings included
        except (TypeError, ValueError):
            row[key] = math.nan
    return row
