"""Read one run directory into a `Run`: what results.json, `.hydra/overrides.yaml` and `config.yaml`
say, and nothing else (never a checkpoint: a table of 2,000 runs must not touch gigabytes).

Every file here may be half-written (a job still running or killed mid-write), hand-edited or
crafted: a results.json that does not parse gives the run the status `unreadable` with the reason;
a field of the wrong type is ignored; files over `MAX_BYTES` and YAML with anchors/aliases (which
Hydra never writes, and which can make a small file expand enormously) are not parsed.

Speed: results.json and overrides.yaml are read for every run (~0.2 ms); config.yaml (and
.hydra/hydra.yaml, for a config group's choice) only when a filter, the sort or a column asks for
a config key, and then only that key's line is parsed (`lookup.find_value`, ~20 us; a whole
config.yaml costs ~1.5 ms even with libyaml, 3 s over 2,000 runs).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from expkit.runs_table.files import Unreadable, _load_json, _load_yaml, _read_text, _yaml_text
from expkit.runs_table.lookup import ABSENT, MAPPING, NotSimple, find_value, list_items

RESULTS_FILE = "results.json"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
HYDRA_FILE = Path(".hydra") / "hydra.yaml"
CONFIG_FILES = (Path("config.yaml"), Path(".hydra") / "config.yaml")  # resolved first
MAX_BYTES = 5_000_000
#: what the table shows for each run besides metrics and config keys (lookups by these names too)
FIELDS = (
    "started_at",
    "task",
    "status",
    "tags",
    "commit",
    "dirty",
    "overrides",
    "wall_time_s",
    "error",
    "run_dir",
)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DATED = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{2})-(\d{2})-(\d{2})")
_MISSING = object()


@dataclass
class Run:
    """One run directory as the table sees it; `value(key)` looks anything up by name."""

    run_dir: Path
    status: str
    task: str | None = None
    started_at: str | None = None
    wall_time_s: float | None = None
    tags: list[str] = field(default_factory=list)
    commit: str | None = None
    dirty: bool | None = None
    overrides: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    _texts: dict[Path, str | None] = field(default_factory=dict, repr=False)
    _parsed: dict[Path, Any] = field(default_factory=dict, repr=False)

    @property
    def started(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.started_at) if self.started_at else None
        except ValueError:
            return None

    def field_value(self, name: str) -> Any:
        if name == "overrides":
            return " ".join(self.overrides)
        if name == "run_dir":
            return str(self.run_dir)
        return getattr(self, name)

    def value(self, key: str) -> Any:
        """The value of `key` for this run, or `MISSING`: a metric (`val/acc`), a field (`status`,
        `tags`, `commit`...), a config key (`optimizer.lr`, from the saved config), a config group's
        choice (`model` → `cnn`, `experiment`), or else the override typed for it."""
        if key in self.metrics:
            return self.metrics[key]
        if key in FIELDS:
            return self.field_value(key)
        value = self._lookup(CONFIG_FILES, key.split("."))
        if value is not _MISSING and value is not MAPPING:
            return value
        # a config group (its node is a mapping) or a key the config lacks: what was typed for it
        # (the command line wins over an experiment's choice), else Hydra's recorded choice
        typed = _override_value(self.overrides, key)
        if typed is not _MISSING:
            return typed
        choice = self._lookup((HYDRA_FILE,), ["hydra", "runtime", "choices", key])
        return _MISSING if choice is MAPPING else choice

    # ---- lazily read config ------------------------------------------------------------------
    def _lookup(self, names: tuple[Path, ...], path: list[str]) -> Any:
        """`path` in the first readable file of `names`: a value, `MAPPING`, or `MISSING`."""
        for name in names:
            if name not in self._texts:
                self._texts[name] = _yaml_text(self.run_dir / name)
            text = self._texts[name]
            if text is None:
                continue
            try:
                value = find_value(text, path)
            except NotSimple:
                value = _navigate(self._parsed_file(name), path)
            return _MISSING if value is ABSENT else value
        return _MISSING

    def _parsed_file(self, name: Path) -> Any:
        if name not in self._parsed:
            try:
                self._parsed[name] = _load_yaml(self.run_dir / name, self._texts[name])
            except Unreadable:
                self._parsed[name] = None
        return self._parsed[name]


MISSING = _MISSING


# ---- reading -------------------------------------------------------------------------------------
def read_run(run_dir: Path) -> Run:
    """A `Run` for `run_dir`; never raises for what is in the directory."""
    run = Run(run_dir=run_dir, status="missing")
    try:
        run.overrides = _read_overrides(run_dir / OVERRIDES_FILE)
    except FileNotFoundError:
        pass
    except Unreadable as err:
        run.error = f"{OVERRIDES_FILE}: {err}"
    try:
        results = _load_json(run_dir / RESULTS_FILE)
    except FileNotFoundError:
        run.error = run.error or "no results.json (still running, or killed before it ended)"
        _fill_from_path(run)
        return run
    except Unreadable as err:
        run.status, run.error = "unreadable", f"{RESULTS_FILE}: {err}"
        _fill_from_path(run)
        return run
    _fill_from_results(run, results)
    _fill_from_path(run)
    return run


def _fill_from_results(run: Run, results: dict[str, Any]) -> None:
    run.status = _text(results.get("status")) or "unknown"
    run.task = _text(results.get("task"))
    run.started_at = _text(results.get("started_at"))
    wall = results.get("total_wall_time_s", results.get("wall_time_s"))  # all attempts
    run.wall_time_s = (
        float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None
    )
    tags = results.get("tags")
    if isinstance(tags, list):
        run.tags = [str(t) for t in tags if isinstance(t, str | int | float)]
    provenance = results.get("provenance")
    if isinstance(provenance, dict):
        run.commit = _text(provenance.get("commit"))
        dirty = provenance.get("dirty")
        run.dirty = dirty if isinstance(dirty, bool) else None
    metrics = results.get("metrics")
    if isinstance(metrics, dict):
        run.metrics = {str(k): _number(v) for k, v in metrics.items()}
    error = results.get("error")
    if isinstance(error, dict):
        run.error = f"{_text(error.get('type'))}: {_text(error.get('message'))}"
    elif error is not None:
        run.error = _text(error)


def _fill_from_path(run: Run) -> None:
    """Task and start time of a run whose results.json does not say (missing, unreadable, old)."""
    parts = run.run_dir.absolute().parts
    if run.task is None:
        for i, part in enumerate(parts[1:], start=1):
            if part in ("runs", "multiruns", "optuna"):
                run.task = parts[i - 1]
                break
    if run.started_at is None:
        for part in reversed(parts):
            dated = _DATED.search(part)
            if dated:
                day, h, m, s = dated.groups()
                run.started_at = f"{day}T{h}:{m}:{s}"
                return
        try:
            stamp = os.stat(run.run_dir).st_mtime
            run.started_at = datetime.fromtimestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S")
        except OSError:
            pass


def _read_overrides(path: Path) -> list[str]:
    text = _read_text(path)
    try:
        return list_items(text)
    except NotSimple:
        items = _load_yaml(path, text)
    if items is None:
        return []
    if not isinstance(items, list):
        raise Unreadable(f"a YAML {type(items).__name__}, not a list of overrides")
    return [str(o) for o in items]


def _text(value: Any, limit: int = 2000) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:limit]
    return text[:limit]


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)  # "nan"/"inf" strings included
    except (TypeError, ValueError):
        return math.nan


def _navigate(node: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return ABSENT
    return MAPPING if isinstance(node, dict) else node


def _override_value(overrides: list[str], key: str) -> Any:
    """The value typed for `key` (`optimizer.lr=0.01`, `+x=1`, `model=cnn`), or `MISSING`."""
    for override in overrides:
        name, sep, value = override.partition("=")
        if sep and name.lstrip("+~") == key:
            try:
                return yaml.load(value, Loader=_LOADER) if value else None
            except yaml.YAMLError:
                return value
    return _MISSING
