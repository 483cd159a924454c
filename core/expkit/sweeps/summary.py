"""One summary of a whole sweep, written into its directory: `summary.csv`, `summary.md`,
`summary_seeds.csv` (when seeds were swept), `summary_folds.csv` (when the folds of a cross-validation
ran as jobs, `cv.fold=0,1,...`) and `summary.png`.

One row per job: the overrides that distinguish it, its status (completed, failed with the error,
or missing when a job left no results.json), the optimized metric, every best-validation and test
metric, wall time and run directory, sorted by the optimized metric. Jobs that differ only by
`seed` are also aggregated (mean, std, count). The picture plots the optimized metric against each
swept hyperparameter.

It reads only what jobs leave on disk (each job directory's `results.json` and
`.hydra/overrides.yaml`), so the same code serves both ends:
- `SweepSummary`, a Hydra callback (`hydra.callbacks` in configs/hydra/default.yaml), writes it at
  the end of every multirun, whatever the launcher or sweeper;
- `python -m expkit.sweeps.summary <sweep_dir>` (`make summary SWEEP=<sweep_dir>`) rebuilds it for any
  existing sweep directory, e.g. one whose sweep was killed, or while it runs.
pandas makes the tables (Markdown through `tabulate`), matplotlib the plot; both are imported only
when a summary is written, since Hydra instantiates its callbacks in every run.

The pieces: `jobs` (what each job left), `summary_tables`, `summary_markdown`, `summary_plot`,
`settings` (the optimized metric and its direction).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from expkit.sweeps.settings import settings_from_files, sweep_settings
from expkit.sweeps.summary_markdown import _for_markdown, _is_other_metric, to_markdown
from expkit.sweeps.summary_plot import plot
from expkit.sweeps.summary_tables import MODES, Summary, summarize
from expkit.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

#: how many rows of the table the end-of-sweep log shows (the files hold every row)
LOGGED_ROWS = 10


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
    if summary.folds is not None:
        atomic_write_text(out / "summary_folds.csv", summary.folds.to_csv(index=False))
        summary.files["folds_csv"] = out / "summary_folds.csv"
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


def _write_failed(err: OSError, sweep_dir: Path) -> str:
    """One line: which summary file could not be written, and why (files are written atomically:
    the ones already there are whole, the failed one is as it was)."""
    what = err.strerror or str(err)
    where = err.filename or sweep_dir
    return (
        f"The sweep summary was not written: {what} while writing {where} (each summary file is "
        f"written whole or not at all). Free some space, then: python -m expkit.sweeps.summary {sweep_dir}"
    )


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
        except OSError as exc:  # a full disk: every job's results.json is written; only this failed
            log.error("%s", _write_failed(exc, sweep_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m expkit.sweeps.summary",
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
    except OSError as exc:  # a full disk, a read-only folder
        parser.exit(1, f"{parser.prog}: {_write_failed(exc, args.sweep_dir)}\n")
    log_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
