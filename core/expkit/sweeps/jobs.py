"""What the jobs of a sweep left on disk, read back: job directories, their overrides, their results.

Job files are untrusted data (a job killed mid-write, a hand edit, a crafted directory): YAML is
read as plain YAML (no interpolation is ever resolved), a job whose files do not parse becomes a
row with the status `unreadable` and the reason (the other rows are written as usual), and every
text value is made printable (`expkit.utils.printable`: control characters escaped).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from expkit.run.record import RESULTS_FILE, RunRecord
from expkit.run.resume_args import OVERRIDES_FILE
from expkit.utils.printable import printable_value

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def read_overrides(path: Path) -> list[str]:
    """A job's `.hydra/overrides.yaml` as plain text items (nothing resolved); [] when absent.

    Raises ValueError when it is not a readable list (or not a regular file: a FIFO never waits)."""
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"{OVERRIDES_FILE} is not a regular file")
    try:
        items = yaml.load(path.read_text(), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ValueError(f"{OVERRIDES_FILE} unreadable: {str(err).splitlines()[0][:120]}") from None
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{OVERRIDES_FILE} is a YAML {type(items).__name__}, not a list")
    return [str(o) for o in items]


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job as a flat dict: job, overrides, status, error, wall time, run_dir, every metric
    (and `gpu`, `gpu_name` for a job of a GPU pool); text made printable."""
    try:
        row = _read_job(job_dir)
    except Exception as err:  # a field of the wrong type in a crafted or damaged file
        row = {"job": job_dir.name, "overrides": [], "status": "unreadable"}
        row.update(
            error=f"results.json unreadable: {type(err).__name__}: {err}", run_dir=str(job_dir)
        )
    return {printable_value(k): printable_value(v) for k, v in row.items()}


def _read_job(job_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"job": job_dir.name, "overrides": []}
    try:
        row["overrides"] = read_overrides(job_dir / OVERRIDES_FILE)
    except ValueError as err:
        row.update(status="unreadable", error=str(err), run_dir=str(job_dir))
        return row
    results = job_dir / RESULTS_FILE
    if results.exists() and not results.is_file():
        row.update(status="unreadable", error=f"{RESULTS_FILE} is not a regular file")
        row["run_dir"] = str(job_dir)
        return row
    try:
        record = RunRecord.read(job_dir / RESULTS_FILE)
    except FileNotFoundError:
        row.update(status="missing", error="no results.json (still running, or killed)")
        row["run_dir"] = str(job_dir)
        return row
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as err:
        row.update(status="unreadable", error=f"results.json unreadable: {err}")
        row["run_dir"] = str(job_dir)
        return row
    error = record.error
    row.update(
        status=str(record.status),
        error=f"{error.get('type')}: {error.get('message')}" if error else None,
        wall_time_s=record.total_wall_time_s
        or record.wall_time_s,  # every attempt of a requeued job
        run_dir=record.output_dir or str(job_dir),
    )
    gpu = record.extra.get("gpu")  # a job of hydra/launcher=gpu_pool: the GPU it ran on
    if isinstance(gpu, dict) and gpu.get("index") is not None:
        row["gpu"] = gpu["index"]
        if gpu.get("name"):
            row["gpu_name"] = gpu["name"]
    for key, value in (record.metrics or {}).items():
        try:
            row[key] = float(value)  # "nan"/"inf" strings included
        except (TypeError, ValueError):
            row[key] = math.nan
    return row
