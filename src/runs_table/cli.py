"""`python -m src.runs_table [dirs...]`: every run and sweep job in one table (`make runs ARGS=...`).

    python -m src.runs_table                                   # everything under logs/
    python -m src.runs_table --tag baseline --status completed --sort val/acc_best --desc
    python -m src.runs_table logs/train/multiruns --where 'optimizer.lr>1e-3' --where model=cnn
    python -m src.runs_table --since 2026-11-01 --csv runs.csv --md runs.md

The console shows the newest `--limit` rows (or the first, by `--sort`) with the columns that
compare runs: start, task, status, tags, commit, overrides, any key named by --where/--sort/
--column, the best-validation and test metrics, wall time and run directory. `--csv` holds every
row and every metric, `--md` the console's columns for every row. Both are written atomically.
pandas is not needed (its import alone costs ~0.6 s of the 2 s a 2,000-run table may take).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.runs_table.discover import find_run_dirs
from src.runs_table.filter import (
    STATUSES,
    FilterError,
    Filters,
    canonical,
    parse_condition,
    parse_date,
    select,
)
from src.runs_table.read import FIELDS, MISSING, Run, read_run

DEFAULT_DIRS = ("logs",)
DEFAULT_LIMIT = 30


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
    best = [m for m in metrics if m.startswith("val/") and "best" in m]
    test = [m for m in metrics if m.startswith("test/")]
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
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if column != "wall_time_s" else f"{value:.1f}"
    text = str(value)
    if short:
        if column == "run_dir":
            return text
        if len(text) > 50:
            text = text[:47] + "..."
    return text


# ---- outputs ---------------------------------------------------------------------------------
def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.all_columns)
    for row in table.rows(table.all_columns):
        writer.writerow(["nan" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return out.getvalue()


def to_markdown(table: Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(c) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| "
        + " | ".join(
            escape(_text(v, c, short=False)) for v, c in zip(row, table.columns, strict=True)
        )
        + " |"
        for row in table.rows(table.columns, display=True)
    ]
    counts = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in table.runs).most_common())
    title = f"# Runs: {len(table.runs)} of {table.found} ({counts or 'none'}); commit* = uncommitted changes"
    return "\n".join([title, "", header, rule, *body, ""])


def print_table(table: Table, limit: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    # piped into a file or a pager: wide rows rather than rich's 80 columns folded letter by letter
    console = Console(width=None if sys.stdout.isatty() else 250)
    shown = table.runs if limit <= 0 else table.runs[:limit]
    # columns empty in every shown row say nothing on a console: dropped there (kept in the files)
    rows = [[_cell(run, c, display=True) for c in table.columns] for run in shown]
    keep = [
        i for i, c in enumerate(table.columns) if c == "run_dir" or any(r[i] != "" for r in rows)
    ]
    rich_table = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i in keep:
        column = table.columns[i]
        numeric = any(isinstance(r[i], float) for r in rows)
        rich_table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=column != "overrides",
            overflow="ellipsis" if column != "run_dir" else "fold",
        )
    for row in rows:
        # Text, not str: "[baseline,cnn]" in an override is data, not rich markup
        rich_table.add_row(*(Text(_text(row[i], table.columns[i], short=True)) for i in keep))
    console.print(rich_table)
    counts = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in table.runs).most_common())
    more = (
        f"; {len(table.runs) - len(shown)} more (--limit 0 shows all)"
        if len(shown) < len(table.runs)
        else ""
    )
    console.print(
        f"{len(table.runs)} of {table.found} run(s) selected ({counts or 'none'}){more}.",
        highlight=False,
    )


# ---- command line ----------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m src.runs_table",
        description="One table of every run and sweep job: overrides, metrics, status, tags, commit.",
    )
    p.add_argument(
        "dirs",
        nargs="*",
        default=list(DEFAULT_DIRS),
        help="run, sweep or log directories to search (default: logs)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="keep runs with this tag (repeat: all of them)",
    )
    p.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME",
        help="keep runs of this task: train, eval... (repeat: any)",
    )
    p.add_argument(
        "--status",
        action="append",
        default=[],
        choices=STATUSES,
        help="keep runs with this status (repeat: any)",
    )
    p.add_argument(
        "--since", metavar="DATE", help="keep runs started on or after DATE (YYYY-MM-DD[THH:MM])"
    )
    p.add_argument("--until", metavar="DATE", help="keep runs started before DATE")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COND",
        help="KEY OP VALUE, OP one of = != > >= < <=: a config key, group choice, metric or field (repeat: all)",
    )
    p.add_argument(
        "--sort",
        metavar="KEY",
        help="sort by this metric, config key or field (default: newest first)",
    )
    p.add_argument(
        "--desc", action="store_true", help="sort descending (runs without a value stay last)"
    )
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="KEY",
        help="add a column: a config key, choice or metric (repeat)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"rows on the console (default {DEFAULT_LIMIT}; 0: all)",
    )
    p.add_argument(
        "--csv", type=Path, metavar="FILE", help="write every selected row and metric as CSV"
    )
    p.add_argument("--md", type=Path, metavar="FILE", help="write the table as Markdown")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        filters = Filters(
            tags=args.tag,
            tasks=args.task,
            statuses=args.status,
            since=parse_date(args.since, "--since") if args.since else None,
            until=parse_date(args.until, "--until") if args.until else None,
            where=tuple(parse_condition(w) for w in args.where),
        )
    except FilterError as err:
        p.exit(2, f"{p.prog}: {err}\n")  # one line: what, the value, what is allowed
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        p.exit(
            2,
            f"{p.prog}: {', '.join(map(str, missing))} is not a directory. Allowed: run, sweep or "
            "log directories (default: logs).\n",
        )
    table = build_table(args.dirs, filters, args.sort, args.desc, args.column)
    for problem in table.problems:
        print(f"skipped {problem}", file=sys.stderr)
    print_table(table, args.limit)
    # imported here: src.utils registers OmegaConf resolvers (~80 ms) that a table does not need
    from src.utils.atomic import atomic_write_text

    for path, text in ((args.csv, to_csv), (args.md, to_markdown)):
        if path is not None:
            try:
                atomic_write_text(path, text(table))
            except OSError as err:
                print(f"could not write {path}: {err}", file=sys.stderr)
                return 1
            print(f"wrote {path}")
    return 0
