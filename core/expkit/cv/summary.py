"""What a cross-validation reports: each fold's record, and the mean ± std over the folds.

`cv_summary.csv`: one row per fold (status, every final metric, wall time, error, run directory),
then a `mean` and a `std` row. `cv_summary.md`: the same turned around, one row per metric
(`mean ± std`, then each fold's value), and the folds that did not complete with their error.
Means and standard deviations (the sample std, n-1, as in the sweep's `summary_seeds.csv`) are taken
over the completed folds only. Both files are written atomically, by rank 0.

It reads only the folds' `results.json` (through `RunRecord`), so folds of an earlier, interrupted
attempt and folds run now are summarized alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from expkit.run.record import RunRecord
from expkit.utils.atomic import atomic_write_text
from expkit.utils.metric_names import stage_of

SUMMARY_CSV = "cv_summary.csv"
SUMMARY_MD = "cv_summary.md"
FOLD_DIR = "fold_{}"


@dataclass
class Fold:
    """One fold as it stands on disk (or as this process saw it end, on DDP ranks > 0)."""

    index: int
    run_dir: Path
    status: str = "missing"  # completed, failed, interrupted, running (killed), missing, unreadable
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float | None = None
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def fold_dir(run_dir: str | Path, index: int) -> Path:
    return Path(run_dir) / FOLD_DIR.format(index)


def _number(value: float | str) -> float:
    try:
        return float(value)  # 'nan'/'inf' as results.json holds them
    except (TypeError, ValueError):
        return math.nan


def read_fold(run_dir: str | Path, index: int) -> Fold:
    """Fold `index` of the cross-validation in `run_dir`, from its results.json."""
    where = fold_dir(run_dir, index)
    try:
        record = RunRecord.read(where)
    except FileNotFoundError:
        return Fold(index, where)
    except (OSError, ValueError) as err:
        return Fold(index, where, "unreadable", error=f"results.json unreadable: {err}")
    error, metrics, wall = record.error, record.metrics or {}, record.wall_time_s
    if not isinstance(metrics, dict) or not isinstance(record.status, str):
        return Fold(index, where, "unreadable", error="results.json: not as src/train.py writes it")
    return Fold(
        index,
        where,
        record.status,
        {str(k): _number(v) for k, v in metrics.items()},
        float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None,
        f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None,
    )


@dataclass
class CVSummary:
    folds: list[Fold]
    mean: dict[str, float]
    std: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def completed(self) -> list[Fold]:
        return [f for f in self.folds if f.completed]

    @property
    def unfinished(self) -> list[Fold]:
        return [f for f in self.folds if not f.completed]


def metric_order(names: list[str], first: str | None = None) -> list[str]:
    """The optimized metric, then test/*, then the validation bests, then every other metric."""
    groups = (
        [n for n in names if n == first],
        sorted(n for n in names if stage_of(n) == "test"),
        sorted(n for n in names if stage_of(n) == "val" and n.endswith("_best")),
        sorted(names),
    )
    return list(dict.fromkeys(n for group in groups for n in group))


def summarize(folds: list[Fold], optimized_metric: str | None = None) -> CVSummary:
    """Mean and sample std of every metric over the completed folds (std NaN with one fold)."""
    done = [f for f in folds if f.completed]
    names = metric_order(list(dict.fromkeys(k for f in done for k in f.metrics)), optimized_metric)
    mean, std = {}, {}
    for name in names:
        values = [f.metrics.get(name, math.nan) for f in done]
        mean[name] = math.fsum(values) / len(values)
        spread = math.fsum((v - mean[name]) ** 2 for v in values)
        std[name] = math.sqrt(spread / (len(values) - 1)) if len(values) > 1 else math.nan
    return CVSummary(folds, mean, std)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def to_csv(summary: CVSummary) -> str:
    import pandas as pd

    rows: list[dict[str, object]] = []
    for fold in summary.folds:
        rows.append(
            {
                "fold": str(fold.index),
                "status": fold.status,
                **fold.metrics,
                "wall_time_s": fold.wall_time_s,
                "error": fold.error,
                "run_dir": str(fold.run_dir),
            }
        )
    n = f"{len(summary.completed)} completed"
    rows.append({"fold": "mean", "status": n, **summary.mean})
    rows.append({"fold": "std", "status": n, **summary.std})
    columns = ["fold", "status", *summary.mean, "wall_time_s", "error", "run_dir"]
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in [*columns, *frame.columns] if c in frame.columns]]
    return frame.loc[:, ~frame.columns.duplicated()].to_csv(index=False)


def to_markdown(summary: CVSummary, title: str) -> str:
    folds = summary.folds
    head = ["metric", "mean ± std", *(f"fold {f.index}" for f in folds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in summary.mean:
        cells = [
            name,
            f"{_fmt(summary.mean[name])} ± {_fmt(summary.std[name])}",
            *(_fmt(f.metrics.get(name)) for f in folds),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    done = f"{len(summary.completed)} of {len(folds)} completed"
    lines.append("| " + " | ".join(["status", done, *(f.status for f in folds)]) + " |")
    walls = (_fmt(f.wall_time_s) for f in folds)
    lines.append("| " + " | ".join(["wall_time_s", "", *walls]) + " |")
    text = [
        f"# {title}",
        "",
        f"Mean ± std over the {len(summary.completed)} completed folds of {len(folds)} (std: the "
        "sample standard deviation, n-1). Each fold validated on its own part of the training "
        "split and was tested on the same, untouched test split; each `fold_<k>/` is a complete "
        "run directory.",
        "",
        *lines,
    ]
    if summary.unfinished:
        text += ["", "Not completed:", ""]
        text += [
            f"- fold {f.index} ({f.status}): {' '.join((f.error or 'not run').split())}"
            f" ({f.run_dir.name}/)"
            for f in summary.unfinished
        ]
    return "\n".join(text) + "\n"


def write_cv_summary(run_dir: str | Path, summary: CVSummary, title: str) -> CVSummary:
    """Write `cv_summary.csv` and `cv_summary.md` into `run_dir`; return `summary` with `.files`."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / SUMMARY_CSV, to_csv(summary))
    atomic_write_text(run_dir / SUMMARY_MD, to_markdown(summary, title))
    summary.files = {"csv": run_dir / SUMMARY_CSV, "markdown": run_dir / SUMMARY_MD}
    return summary
