"""The table of runs as CSV, Markdown, or on the console (rich)."""

from __future__ import annotations

import csv
import io
import math
import sys
from collections import Counter

from expkit.runs_table.table import Table, _cell, _text
from expkit.utils.printable import printable, printable_value


# ---- outputs ---------------------------------------------------------------------------------
def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([printable(c) for c in table.all_columns])
    for row in table.rows(table.all_columns):
        writer.writerow(
            ["nan" if isinstance(v, float) and math.isnan(v) else printable_value(v) for v in row]
        )
    return out.getvalue()


def to_markdown(table: Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(printable(c)) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| "
        + " | ".join(
            escape(_text(v, c, short=False)) for v, c in zip(row, table.columns, strict=True)
        )
        + " |"
        for row in table.rows(table.columns, display=True)
    ]
    counts = ", ".join(
        f"{n} {printable(s)}" for s, n in Counter(r.status for r in table.runs).most_common()
    )
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
            Text(printable(column)),
            justify="right" if numeric else "left",
            no_wrap=column != "overrides",
            overflow="ellipsis" if column != "run_dir" else "fold",
        )
    for row in rows:
        # Text, not str: "[baseline,cnn]" in an override is data, not rich markup
        rich_table.add_row(*(Text(_text(row[i], table.columns[i], short=True)) for i in keep))
    console.print(rich_table)
    counts = ", ".join(
        f"{n} {printable(s)}" for s, n in Counter(r.status for r in table.runs).most_common()
    )
    more = (
        f"; {len(table.runs) - len(shown)} more (--limit 0 shows all)"
        if len(shown) < len(table.runs)
        else ""
    )
    console.print(
        Text(f"{len(table.runs)} of {table.found} run(s) selected ({counts or 'none'}){more}."),
        highlight=False,
    )
