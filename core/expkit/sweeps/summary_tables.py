"""The tables of a sweep summary: one row per job, and mean ± std over seeds and over the folds of
a cross-validation run as parallel jobs (`-m cv.folds=5 cv.fold=0,1,2,3,4`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit.run.record import RESULTS_FILE
from expkit.run.record import STATUSES as RUN_STATUSES
from expkit.run.resume_args import OVERRIDES_FILE
from expkit.sweeps.jobs import find_job_dirs, parse_overrides, read_job
from expkit.utils.metric_names import find, is_metric_column, stage_of

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

SEED_KEY = "seed"
FOLD_KEY = "cv.fold"
MODES = ("max", "min")
STATUSES = (*RUN_STATUSES, "unreadable", "missing")


@dataclass
class Summary:
    """The tables of one sweep (what `summarize` returns and `write_summary` writes)."""

    sweep_dir: Path
    metric: str | None
    mode: str
    jobs: pd.DataFrame  # one row per job, sorted by the metric
    swept: list[str]  # override keys whose value differs between jobs
    common: list[str]  # overrides every job shares
    seeds: pd.DataFrame | None = None  # mean/std over seeds, when seeds were swept
    folds: pd.DataFrame | None = None  # mean/std over cv.fold, when folds ran as jobs
    log_x: tuple[str, ...] = ()  # swept keys to plot on a log axis
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Jobs per status: completed, failed, interrupted, missing (then any other)."""
        found = self.jobs["status"].value_counts()
        order = [*STATUSES, *sorted(set(found.index) - set(STATUSES))]
        return {status: int(found[status]) for status in order if status in found}


def _metric_columns(frame: pd.DataFrame, metric: str | None) -> list[str]:
    """The optimized metric first, then every best-validation metric, then every test metric."""
    names = [c for c in frame.columns if is_metric_column(c)]
    best = [c for c in names if stage_of(c) == "val" and "best" in c]
    test = [c for c in names if stage_of(c) == "test"]
    ordered = ([metric] if metric in names else []) + best + test
    return list(dict.fromkeys(ordered))


def summarize(
    sweep_dir: str | Path, metric: str | None = None, mode: str = "max", log_x: tuple[str, ...] = ()
) -> Summary:
    """Read every job of `sweep_dir` and build the per-job and per-seed tables (writes nothing)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed: use one of {', '.join(MODES)}.")
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"Sweep directory {sweep_dir} does not exist.")
    job_dirs = find_job_dirs(sweep_dir)
    if not job_dirs:
        raise FileNotFoundError(
            f"No job directories in {sweep_dir} (sub-directories with {RESULTS_FILE} or "
            f"{OVERRIDES_FILE}): is it a sweep directory (logs/<task>/multiruns/<run>)?"
        )
    rows = [read_job(d) for d in job_dirs]
    values = [parse_overrides(r["overrides"]) for r in rows]
    keys = list(dict.fromkeys(k for v in values for k in v))
    swept = [k for k in keys if len({repr(v.get(k)) for v in values}) > 1]
    common = [o for o in rows[0]["overrides"] if next(iter(parse_overrides([o]))) not in swept]
    for row, value in zip(rows, values, strict=True):
        row.update({k: value.get(k) for k in swept})
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in common)

    frame = pd.DataFrame(rows)
    metric = find(metric, frame.columns)  # `val_loss_epoch` finds `val_loss`
    if metric is None:
        log.warning("No optimized metric in the jobs' results: the summary is not sorted.")
    else:
        # completed jobs first, each group by the metric (a failed job's partial metrics rank last)
        frame = frame.assign(_unfinished=frame["status"] != "completed").sort_values(
            ["_unfinished", metric],
            ascending=[True, mode == "min"],
            na_position="last",
            kind="stable",
        )
        frame = frame.drop(columns="_unfinished")
    columns = ["job", *swept, "status", "gpu", *_metric_columns(frame, metric), "wall_time_s"]
    columns += [c for c in frame.columns if c not in columns]  # all other metrics, error, run_dir
    frame = frame[[c for c in columns if c in frame.columns]].reset_index(drop=True)

    summary = Summary(sweep_dir, metric, mode, frame, swept, common, log_x=tuple(log_x))
    if SEED_KEY in swept:
        summary.seeds = aggregate(frame, [k for k in swept if k != SEED_KEY], metric, mode)
    if FOLD_KEY in swept:
        summary.folds = aggregate(frame, [k for k in swept if k != FOLD_KEY], metric, mode)
    return summary


def aggregate(frame: pd.DataFrame, by: list[str], metric: str | None, mode: str) -> pd.DataFrame:
    """Mean and std of each metric over jobs that differ only in what `by` leaves out (a seed, a
    fold): one row per value of `by`; completed jobs count."""
    import pandas as pd

    metrics = _metric_columns(frame, metric)
    groups = frame.groupby(by, dropna=False, sort=False) if by else [((), frame)]
    rows = []
    for key, group in groups:
        done = group[group["status"] == "completed"]
        row: dict[str, Any] = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(jobs=len(group), completed=len(done))
        for name in metrics:
            row[f"{name} mean"] = done[name].mean()
            row[f"{name} std"] = done[name].std(ddof=1) if len(done) > 1 else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric and f"{metric} mean" in table.columns:
        table = table.sort_values(f"{metric} mean", ascending=(mode == "min"), na_position="last")
    return table.reset_index(drop=True)
