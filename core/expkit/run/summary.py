"""The few lines a run ends with, on the console and in its log: how it went and where everything is.

After a run a user wants the numbers, the files to open next and the commands to run next, without
digging through the run directory. Neither Lightning nor Hydra prints such a summary. Each task
supplies its own rows (`RunRecord.summary_rows`); `summary_text` frames them with what every run
has (status, wall time, run directory, results file, log).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit.utils.logging_utils import get_logger

if TYPE_CHECKING:
    from expkit.run.record import RunRecord

log = get_logger(__name__)

RULE = "─" * 78


def show_path(path: str | Path) -> str:
    """A path as the user can paste it: relative to the current directory when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command(script: str, *args: str) -> str:
    """`python src/<script>.py arg…`, each argument shell-quoted only where it needs it."""
    return " ".join(["python", f"src/{script}.py", *(shlex.quote(a) for a in args)])


def format_metrics(metrics: Mapping[str, Any], prefixes: Sequence[str] = ()) -> str:
    """`val/acc 0.9792 · val/loss 0.1619` (only keys starting with one of `prefixes`, if given)."""
    items = [
        f"{key} {_number(value, key)}"
        for key, value in sorted(metrics.items())
        if not prefixes or key.startswith(tuple(prefixes))
    ]
    return " · ".join(items) or "none"


def _number(value: Any, key: str = "") -> str:
    if isinstance(value, float) and math.isfinite(value):
        if key.endswith("count") and value.is_integer():
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def existing(path: Path) -> str:
    """`show_path(path)` if the file exists, else '' (the row is then left out)."""
    return show_path(path) if path.exists() else ""


def summary_lines(title: str, rows: Sequence[tuple[str, str]]) -> str:
    rows = [(label, value) for label, value in rows if label and value]
    width = max((len(label) for label, _ in rows), default=0)
    body = [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join([f"{title} {RULE[len(title) + 1 :]}", *body, RULE])


def summary_text(record: RunRecord) -> str:
    """The task's rows framed by the title line and the files every run writes."""
    out = Path(record.output_dir)
    wall = f" in {record.wall_time_s:.1f} s" if record.wall_time_s is not None else ""
    if record.attempts > 1 and record.total_wall_time_s is not None:
        wall += f" (attempt {record.attempts}, {record.total_wall_time_s:.1f} s in all)"
    model = record.best_model_path if record.task != "train" else None
    rows = [
        ("checkpoint", show_path(model) if model else ""),
        *record.summary_rows,
        ("run directory", show_path(out)),
        ("results", existing(record.path)),
        ("log", existing(out / f"{record.task}.log")),
    ]
    return summary_lines(f"{record.task.capitalize()} summary: {record.status}{wall}", rows)


def log_summary(text: str) -> None:
    """One log record (console and `<task>.log`), so the summary stays in one piece."""
    log.info("\n%s", text)
