"""Run a task function (train, eval, predict, export) under `@hydra.main`: as a single run, or as
one job of a multirun.

A single run behaves as a plain call: an exception ends it with a traceback and exit code 1, a
user error (`TemplateError`) with its one line (the traceback too with `HYDRA_FULL_ERROR=1`).
In a multirun, one failed job must not end the sweep (Hydra's launchers stop at the first
exception, and the Optuna sweeper stops its study): the job's `results.json` already says
`failed` with the error (`expkit.run.lifecycle`), so here the error is logged and the job returns NaN,
which the Optuna sweeper records as a failed trial; the sweep goes on and its summary lists the
job as failed. A job stopped by an Optuna pruner raises `optuna.TrialPruned` on to the sweeper,
which stores its trial PRUNED. Ctrl+C still stops the whole sweep. DDP jobs keep their ranks in
their own directory (`expkit.sweeps.ddp`).
"""

import math
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from expkit.errors import MetricNotProducedError, full_error_requested, user_error
from expkit.run.lock import is_rank_zero
from expkit.sweeps.ddp import ranks_join_this_job
from expkit.sweeps.threads import follow_cpu_allocation
from expkit.utils.logging_utils import get_logger
from expkit.utils.metric_names import find

log = get_logger(__name__)

Task = Callable[[DictConfig], dict[str, float | str]]


def in_multirun() -> bool:
    """True inside a job of `python src/<task>.py -m ...` (any launcher, any sweeper)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def optimized_value(metrics: dict[str, float | str], cfg: DictConfig) -> float | None:
    """The value a sweeper optimizes: `metrics[cfg.optimized_metric]` (None when not configured)."""
    key = find(cfg.get("optimized_metric"), metrics)  # `val_loss_epoch` finds `val_loss`
    if not cfg.get("optimized_metric"):
        return None
    if key is None:
        log.warning(
            "optimized_metric=%r was not produced by this run (got %s).",
            cfg.get("optimized_metric"),
            list(metrics),
        )
        return None
    return float(metrics[key])  # 'nan'/'inf' as text in results.json, a float for the sweeper


def require_optimized_metric(key: str | None, metrics: dict[str, float | str]) -> None:
    """In a sweep, a job without the optimized metric failed: the sweeper has nothing to rank.

    Called inside the task, so the job's results.json says `failed` with this reason (a single
    run only gets the warning of `optimized_value`)."""
    if key and find(key, metrics) is None and in_multirun():
        raise MetricNotProducedError(
            f"optimized_metric={key!r} was not produced by this job (it produced: "
            f"{', '.join(sorted(metrics)) or 'nothing'}). Allowed: a metric the run logs, e.g. "
            "val/acc_best, or test/* only with test=true."
        )


def _pruned(exc: BaseException) -> bool:
    """`exc` is Optuna's TrialPruned (optuna is loaded only when a job reports to a study)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)


def run_job(task: Task, cfg: DictConfig, script: str | Path) -> float | None:
    """`task(cfg)`, then the optimized metric; in a multirun a failure returns NaN instead of raising.

    `script` is the entry point's file (`__file__`): DDP ranks of a multirun job run it again.
    Inside a SLURM job, torch's threads first follow the CPUs the task was given.
    """
    follow_cpu_allocation()
    if not in_multirun():
        try:
            return optimized_value(task(cfg), cfg)
        except Exception as exc:
            err = user_error(exc)
            if err is None or full_error_requested():
                raise
            # its one line alone: raised as an exception, Hydra would put "Error executing job
            # with overrides: [...]" above it and its HYDRA_FULL_ERROR advice below
            raise SystemExit(str(err)) from exc
    try:
        with ranks_join_this_job(script):
            metrics = task(cfg)
    except Exception as exc:
        if _pruned(exc):  # the sweeper stores the trial PRUNED (expkit/callbacks/optuna_pruning.py)
            raise
        if not is_rank_zero():  # rank 0 records how the job ended; a rank > 0 often only sees
            # rank 0 leave (a requeue, a time limit): its error is no verdict on the job
            log.warning("Rank stopped: %s: %s", type(exc).__name__, exc)
            return math.nan
        hydra_cfg = HydraConfig.get()
        log.error(
            "Job #%s (%s) failed, the sweep goes on (its results.json has the error): %s: %s",
            hydra_cfg.job.num,
            " ".join(hydra_cfg.overrides.task),
            type(exc).__name__,
            exc,
            exc_info=True,
        )
        return math.nan
    return optimized_value(metrics, cfg)
