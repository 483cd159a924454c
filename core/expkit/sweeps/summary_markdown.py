"""The Markdown page of a sweep summary (`summary.md`), and the table the end-of-sweep log shows."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from expkit.sweeps.summary_tables import Summary, _metric_columns
from expkit.utils.metric_names import is_metric_column

if TYPE_CHECKING:
    import pandas as pd


def _for_markdown(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as empty cells; long errors shortened (the CSV keeps them whole)."""
    frame = frame.astype(object).where(frame.notna(), "")
    if "error" in frame.columns:
        frame["error"] = [e if len(e) <= 120 else e[:117] + "..." for e in frame["error"]]
    return frame


def _seed_table_for_markdown(seeds: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    import pandas as pd

    out = seeds[[c for c in seeds.columns if not c.endswith((" mean", " std"))]].copy()
    for name in metric_names:
        mean, std = seeds.get(f"{name} mean"), seeds.get(f"{name} std")
        if mean is None:
            continue
        out[name] = [
            "" if pd.isna(m) else f"{m:.4f}" if pd.isna(s) else f"{m:.4f} ± {s:.4f}"
            for m, s in zip(mean, std, strict=True)
        ]
    return out


def to_markdown(summary: Summary, plot_name: str | None = None) -> str:
    jobs = summary.jobs.drop(columns=["overrides"], errors="ignore")
    if "error" in jobs.columns and jobs["error"].isna().all():
        jobs = jobs.drop(columns=["error"])
    jobs = jobs[[c for c in jobs.columns if not _is_other_metric(c, summary)]]
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
    lines = [f"# Sweep summary: {summary.sweep_dir}", "", f"{len(summary.jobs)} jobs: {counts}."]
    if summary.metric:
        lines.append(f"Sorted by `{summary.metric}` ({summary.mode}).")
        best = summary.jobs.iloc[0]
        if best["status"] == "completed" and not math.isnan(best[summary.metric]):
            lines.append(
                f"Best: job {best['job']} ({best['overrides'] or 'no distinguishing override'}), "
                f"{summary.metric} = {best[summary.metric]:.4f}."
            )
    if summary.common:
        lines.append(f"Overrides shared by every job: `{' '.join(summary.common)}`.")
    lines += ["", _for_markdown(jobs).to_markdown(index=False, floatfmt=".4g"), ""]
    names = _metric_columns(summary.jobs, summary.metric)
    for title, table in (("seeds", summary.seeds), ("folds (cv.fold)", summary.folds)):
        if table is not None and not table.empty:
            lines += [
                f"## Mean ± std over {title} (completed jobs)",
                "",
                _seed_table_for_markdown(table, names).to_markdown(index=False),
                "",
            ]
    if plot_name:
        lines += [f"![{summary.metric} against each swept hyperparameter]({plot_name})", ""]
    return "\n".join(lines)


def _is_other_metric(column: str, summary: Summary) -> bool:
    """train/* and last-epoch val/* metrics stay in the CSV; the Markdown keeps the ones to compare."""
    return is_metric_column(column) and column not in _metric_columns(summary.jobs, summary.metric)
