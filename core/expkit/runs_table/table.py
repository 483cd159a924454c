"""The table of runs: which columns, which rows, in which order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expkit.runs_table.discover import find_run_dirs
from expkit.runs_table.filter import (
    Filters,
    canonical,
    select,
)
from expkit.runs_table.read import FIELDS, MISSING, Run, read_run
from expkit.utils.metric_names import stage_of
from expkit.utils.printable import printable


@dataclass
class Table:
    """The selected runs, in order, and the columns to show (`rows()` gives their values)."""

    runs: list[Run]
    columns: list[str]  # the console's and the Markdown's
    all_columns: list[str]  # the CSV's: also every other metric
    found: int  # run directories found before filtering
    problems: list[str]

    def rows(self, columns: Sequence[str], display: bool = False) -> list[list[Any]]:
        return [[_cell(run, column, display) for column in columns] for run in self.runs]


def build_table(
    dirs: Sequence[str | Path],
    filters: Filters | None = None,
    sort: str | None = None,
    descending: bool = False,
    columns: Sequence[str] = (),
) -> Table:
    """Find, read, filter and sort every run under `dirs`; the `Table` behind every output."""
    filters = filters or Filters()
    run_dirs, problems = find_run_dirs(dirs)
    runs = select((read_run(d) for d in run_dirs), filters)
    if sort:
        runs = _sorted(runs, sort, descending)
    else:  # newest first
        runs = sorted(runs, key=lambda r: r.started_at or "", reverse=True)
    metrics = list(dict.fromkeys(k for run in runs for k in run.metrics))
    shown_metrics = _compared_metrics(metrics)
    asked = list(
        dict.fromkeys([*(c.key for c in filters.where), *([sort] if sort else []), *columns])
    )
    asked = [k for k in asked if k not in FIELDS]
    head = ["started_at", "task", "status", "tags", "commit", "overrides"]
    extra = [k for k in asked if k not in shown_metrics]
    tail = ["wall_time_s", "error", "run_dir"]
    shown = head + extra + [m for m in shown_metrics] + tail
    every = (
        head
        + extra
        + shown_metrics
        + [m for m in metrics if m not in shown_metrics]
        + ["dirty", *tail]
    )
    for key in asked:  # a metric asked for by name is shown even if it is not a compared one
        if key in metrics and key not in shown:
            shown.insert(len(head) + len(extra), key)
    return Table(runs, shown, list(dict.fromkeys(every)), len(run_dirs), problems)


def _compared_metrics(metrics: list[str]) -> list[str]:
    """The metrics that compare runs: best validation ones, then test ones."""
    best = [m for m in metrics if stage_of(m) == "val" and "best" in m]
    test = [m for m in metrics if stage_of(m) == "test"]
    return best + test


def _sorted(runs: list[Run], key: str, descending: bool) -> list[Run]:
    """By `key`, numbers as numbers, runs without a value last (in either direction)."""

    def sort_key(run: Run) -> tuple:
        value = canonical(run.value(key))
        if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
            return (2, 0, "")
        if isinstance(value, float):
            return (0, -value if descending else value, "")
        return (1, 0, str(value))

    ordered = sorted(runs, key=sort_key)
    if descending:  # text values reversed too, missing ones still last
        numbers = [r for r in ordered if sort_key(r)[0] == 0]
        texts = [r for r in ordered if sort_key(r)[0] == 1][::-1]
        ordered = numbers + texts + [r for r in ordered if sort_key(r)[0] == 2]
    return ordered


def _cell(run: Run, column: str, display: bool = False) -> Any:
    """The value of `column` for `run`; `display`: as people read it (a dirty commit marked `*`)."""
    value = run.value(column)
    if value is MISSING or value is None:
        return ""
    if isinstance(value, list) and column == "tags":
        return ",".join(value)
    if display and column == "commit":
        return value[:10] + ("*" if run.dirty else "")
    if display and column == "started_at":
        return value.replace("T", " ")[:16]
    return value


def _text(value: Any, column: str, short: bool) -> str:
    """A cell as text; control characters escaped (a file's text never reaches the terminal raw)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if column != "wall_time_s" else f"{value:.1f}"
    text = printable(str(value))
    if short:
        if column == "run_dir":
            return text
        if len(text) > 50:
            text = text[:47] + "..."
    return text
