"""`results.json`: how a run ended, written by every task and read by every summary.

One dataclass, `RunRecord`, is filled in while the task runs and written when it ends, whatever
the ending (`completed`, `failed`, `interrupted`), so a sweep summary can list failed jobs with
their error and nothing half-done passes for a result. Readers (`python -m expkit.sweeps.summary`,
the tests) use `RunRecord.read`, never string keys of their own.

The record is a public contract: `schema_version` says which shape it has (records written before
the field existed read as version 1; version 2 added `schema_version` and `library`, the name and
version of the library that wrote it). New fields may be added within a version; a field is never
renamed or removed without a new version (see the library's CHANGELOG.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from expkit import __version__ as library_version
from expkit.utils.atomic import atomic_write_text

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 2
STATUSES = ("completed", "failed", "interrupted", "pruned")


@dataclass
class RunRecord:
    """What a run produced. `extra` holds task-specific facts (resumed_from, input, files...)."""

    task: str
    output_dir: str
    status: str = "running"
    metrics: dict[str, float | str] = field(default_factory=dict)
    best_model_path: str | None = None
    last_model_path: str | None = None
    wall_time_s: float | None = None
    #: attempts on this run directory (a resume or requeue is one more) and their summed wall time
    attempts: int = 1
    total_wall_time_s: float | None = None
    started_at: str | None = None
    error: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    library: dict[str, str] = field(
        default_factory=lambda: {"name": "expkit", "version": library_version}
    )
    #: the task's lines for the end-of-run summary (label, value); not written to results.json
    summary_rows: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def add_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Store floats (tensors converted); NaN/inf as text, which JSON can hold."""
        for key, value in metrics.items():
            value = float(value)
            self.metrics[key] = value if math.isfinite(value) else str(value)

    @property
    def path(self) -> Path:
        return Path(self.output_dir) / RESULTS_FILE

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("summary_rows")
        extra = data.pop("extra")
        if data["error"] is None:
            data.pop("error")
        return {**data, **extra}

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.to_json(), indent=2, default=str) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """The record in `path` (a results.json or its run directory); OSError/ValueError if unreadable."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        known = {f.name for f in fields(cls)} - {"extra", "summary_rows"}
        record = cls(
            task=str(data.get("task", "?")), output_dir=str(data.get("output_dir", path.parent))
        )
        record.schema_version, record.library = 1, {}  # what a record without these fields is
        for key, value in data.items():
            if key in known:
                setattr(record, key, value)
            else:
                record.extra[key] = value
        return record
