"""One summary of a whole sweep, written into its directory: `summary.csv`, `summary.md`,
`summary_seeds.csv` (when seeds were swept) and `summary.png`.

One row per job: the overrides that distinguish it, its status (completed, failed with the error,
or missing when a job left no results.json), the optimized metric, every best-validation and test
metric, wall time and run directory, sorted by the optimized metric. Jobs that differ only by
`seed` are also aggregated (mean, std, count). The picture plots the optimized metric against each
swept hyperparameter.

It reads only what jobs leave on disk (each job directory's `results.json` and
`.hydra/overrides.yaml`), so the same code serves both ends:
- `SweepSummary`, a Hydra callback (`hydra.callbacks` in configs/hydra/default.yaml), writes it at
  the end of every multirun, whatever the launcher or sweeper;
- `python -m src.sweeps.summary <sweep_dir>` (`make summary SWEEP=<sweep_dir>`) rebuilds it for any
  existing sweep directory, e.g. one whose sweep was killed, or while it runs.
pandas makes the tables (Markdown through `tabulate`), matplotlib the plot; both are imported only
when a summary is written, since Hydra instantiates its callbacks in every run.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.run.record import RESULTS_FILE, RunRecord
from src.run.record import STATUSES as RUN_STATUSES
from src.run.resume_args import OVERRIDES_FILE
from src.utils.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SEED_KEY = "seed"
MODES = ("max", "min")
STATUSES = (*RUN_STATUSES, "missing")
#: how many rows of the table the end-of-sweep log shows (the files hold every row)
LOGGED_ROWS = 10


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
    log_x: tuple[str, ...] = ()  # swept keys to plot on a log axis
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Jobs per status: completed, failed, interrupted, missing (then any other)."""
        found = self.jobs["status"].value_counts()
        order = [*STATUSES, *sorted(set(found.index) - set(STATUSES))]
        return {status: int(found[status]) for status in order if status in found}


# ---- reading what the jobs left --------------------------------------------------------------
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


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job as a flat dict: job, overrides, status, error, wall time, run_dir, every metric."""
    overrides_path = job_dir / OVERRIDES_FILE
    overrides = list(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
    row: dict[str, Any] = {"job": job_dir.name, "overrides": [str(o) for o in overrides]}
    try:
        record = RunRecord.read(job_dir / RESULTS_FILE)
    except FileNotFoundError:
        row.update(status="missing", error="no results.json (still running, or killed)")
        row["run_dir"] = str(job_dir)
        return row
    except (OSError, ValueError) as err:
        row.update(status="unreadable", error=f"results.json unreadable: {err}")
        row["run_dir"] = str(job_dir)
        return row
    error = record.error
    row.update(
        status=record.status,
        error=f"{error.get('type')}: {error.get('message')}" if error else None,
        wall_time_s=record.wall_time_s,
        run_dir=record.output_dir or str(job_dir),
    )
    for key, value in (record.metrics or {}).items():
        try:
            row[key] = float(value)  # "nan"/"inf" strings included
        except (TypeError, ValueError):
            row[key] = math.nan
    return row


# ---- building the tables ---------------------------------------------------------------------
def _metric_columns(frame: pd.DataFrame, metric: str | None) -> list[str]:
    """The optimized metric first, then every best-validation metric, then every test metric."""
    names = [c for c in frame.columns if "/" in c]
    best = [c for c in names if c.startswith("val/") and "best" in c]
    test = [c for c in names if c.startswith("test/")]
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
    metric = metric if metric and metric in frame.columns else None
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
    columns = ["job", *swept, "status", *_metric_columns(frame, metric), "wall_time_s"]
    columns += [c for c in frame.columns if c not in columns]  # all other metrics, error, run_dir
    frame = frame[[c for c in columns if c in frame.columns]].reset_index(drop=True)

    summary = Summary(sweep_dir, metric, mode, frame, swept, common, log_x=tuple(log_x))
    if SEED_KEY in swept:
        summary.seeds = aggregate_seeds(frame, [k for k in swept if k != SEED_KEY], metric, mode)
    return summary


def aggregate_seeds(
    frame: pd.DataFrame, by: list[str], metric: str | None, mode: str
) -> pd.DataFrame:
    """Mean and std of each metric over jobs that differ only by seed (completed jobs count)."""
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


# ---- writing ---------------------------------------------------------------------------------
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
    if summary.seeds is not None and not summary.seeds.empty:
        names = _metric_columns(summary.jobs, summary.metric)
        lines += [
            "## Mean ± std over seeds (completed jobs)",
            "",
            _seed_table_for_markdown(summary.seeds, names).to_markdown(index=False),
            "",
        ]
    if plot_name:
        lines += [f"![{summary.metric} against each swept hyperparameter]({plot_name})", ""]
    return "\n".join(lines)


def _is_other_metric(column: str, summary: Summary) -> bool:
    """train/* and last-epoch val/* metrics stay in the CSV; the Markdown keeps the ones to compare."""
    return "/" in column and column not in _metric_columns(summary.jobs, summary.metric)


def plot(summary: Summary, path: Path) -> Path | None:
    """The optimized metric against each swept hyperparameter (seed only when nothing else varies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import pandas as pd

    metric = summary.metric
    done = summary.jobs[summary.jobs["status"] == "completed"]
    if metric is None or done[metric].isna().all():
        return None
    params = [k for k in summary.swept if k != SEED_KEY] or summary.swept or ["job"]
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.4), squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        x = done[param]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        if not numeric:
            labels = sorted({str(v) for v in x})
            x = x.map(lambda v, labels=labels: labels.index(str(v)))
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.scatter(x, done[metric], alpha=0.7, label="job")
        means = done.assign(_x=x).groupby("_x")[metric].agg(["mean", "std", "count"])
        if (means["count"] > 1).any():
            ax.errorbar(
                means.index,
                means["mean"],
                yerr=means["std"].fillna(0),
                color="C1",
                marker="_",
                capsize=3,
                label="mean ± std",
            )
            ax.legend(fontsize=8)
        if numeric and (param in summary.log_x or _geometric(x)):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary.sweep_dir.name}: {len(done)} completed job(s)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _geometric(x: pd.Series) -> bool:
    """Grid values spaced by factors (1e-4, 1e-3, 1e-2): a log axis shows them evenly."""
    values = sorted(set(x.dropna()))
    if len(values) < 2 or values[0] <= 0 or values[-1] / values[0] < 10:
        return False
    steps = [b / a for a, b in zip(values, values[1:], strict=False)]
    return math.prod(steps) ** (1 / len(steps)) >= 3


def write_summary(
    sweep_dir: str | Path, metric: str | None = None, mode: str = "max", log_x: tuple[str, ...] = ()
) -> Summary:
    """Build the summary of `sweep_dir` and write its files there; return it (with `.files`)."""
    summary = summarize(sweep_dir, metric, mode, log_x)
    out = summary.sweep_dir
    atomic_write_text(out / "summary.csv", summary.jobs.to_csv(index=False))
    summary.files["csv"] = out / "summary.csv"
    if summary.seeds is not None:
        atomic_write_text(out / "summary_seeds.csv", summary.seeds.to_csv(index=False))
        summary.files["seeds_csv"] = out / "summary_seeds.csv"
    picture = plot(summary, out / "summary.png")
    if picture is not None:
        summary.files["plot"] = picture
    atomic_write_text(out / "summary.md", to_markdown(summary, picture.name if picture else None))
    summary.files["markdown"] = out / "summary.md"
    return summary


def log_summary(summary: Summary) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
    head = _for_markdown(
        summary.jobs.drop(columns=["overrides", "run_dir", "error"], errors="ignore")
    )
    head = head[[c for c in head.columns if not _is_other_metric(c, summary)]].head(LOGGED_ROWS)
    log.info(
        "Sweep summary (%d jobs: %s)%s:\n%s\nWritten: %s",
        len(summary.jobs),
        counts,
        f", sorted by {summary.metric} ({summary.mode})" if summary.metric else "",
        head.to_markdown(index=False, floatfmt=".4g"),
        ", ".join(str(p) for p in summary.files.values()),
    )
    failed = summary.jobs[summary.jobs["status"] != "completed"]
    for _, job in failed.iterrows():
        log.error("Job %s %s: %s (%s)", job["job"], job["status"], job.get("error"), job["run_dir"])


# ---- where the metric and its direction come from --------------------------------------------
def _mode_from_direction(direction: Any) -> str | None:
    if isinstance(direction, list | tuple) or OmegaConf.is_list(direction):
        direction = direction[0] if len(direction) else None
    name = str(getattr(direction, "name", direction) or "").lower()
    return {"maximize": "max", "minimize": "min"}.get(name)


@dataclass
class Settings:
    """What a summary needs to know about its sweep beyond the job directories."""

    metric: str | None = None  # the optimized metric
    mode: str = "max"
    log_x: tuple[str, ...] = ()  # Optuna parameters sampled on a log scale: tag(log, ...)


def sweep_settings(config: DictConfig) -> Settings:
    """Settings of a composed config: the metric is `optimized_metric`; its direction is the
    sweeper's (Optuna) if it has one, else `monitor.mode`."""
    metric = OmegaConf.select(config, "optimized_metric", default=None)
    mode = _mode_from_direction(OmegaConf.select(config, "hydra.sweeper.direction", default=None))
    mode = mode or OmegaConf.select(config, "monitor.mode", default=None) or "max"
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    log_x = tuple(str(k) for k, v in params.items() if "tag(" in str(v) and "log" in str(v))
    return Settings(metric, mode, log_x)


def settings_from_files(sweep_dir: Path) -> Settings:
    """The same, read from what a sweep leaves on disk (multirun.yaml, or a job's saved config)."""
    candidates = [sweep_dir / "multirun.yaml"]
    for job in find_job_dirs(sweep_dir)[:1]:
        candidates.append(job / ".hydra" / "config.yaml")
        candidates.append(job / ".hydra" / "hydra.yaml")
    merged: Any = OmegaConf.create()
    for path in candidates:
        if path.is_file():
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    try:
        return sweep_settings(merged)
    except Exception:  # an interpolation only a live Hydra run can resolve
        return Settings()


# ---- the Hydra callback and the command line -------------------------------------------------
class SweepSummary(Callback):
    """Writes the summary into the sweep directory when a multirun ends (`hydra.callbacks`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        settings = sweep_settings(config)
        try:
            log_summary(write_summary(sweep_dir, settings.metric, settings.mode, settings.log_x))
        except FileNotFoundError as exc:
            log.warning("No sweep summary: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.sweeps.summary",
        description="Rebuild summary.csv, summary.md and summary.png of an existing sweep directory.",
    )
    parser.add_argument("sweep_dir", type=Path, help="e.g. logs/train/multiruns/<date>_<time>_<id>")
    parser.add_argument(
        "--metric", help="the metric to sort by (default: the sweep's optimized_metric)"
    )
    parser.add_argument("--mode", choices=MODES, help="max or min (default: the sweep's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.sweep_dir.is_dir():
        parser.error(f"sweep_dir {args.sweep_dir} is not a directory")
    settings = settings_from_files(args.sweep_dir)
    metric, mode = args.metric or settings.metric, args.mode or settings.mode
    try:
        summary = write_summary(args.sweep_dir, metric, mode, settings.log_x)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    log_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
