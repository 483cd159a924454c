"""A run directory holds one run: a new run typed into an existing run's directory is refused.

`python src/train.py hydra.run.dir=<an existing run> …` without `resume=` would continue that run
(its newest checkpoint, its history, its results.json) with another config. It is refused before
Hydra writes anything there, naming `resume=`. What continues the *same* run is let through:
- `resume=<dir>` (expanded into `hydra.run.dir=<dir>` with the run's own overrides);
- a DDP rank > 0, which Lightning starts with its rank 0's command line and directory;
- a SLURM requeue or restart of the job that started the run (`scripts/slurm/train.sbatch` passes
  the same `hydra.run.dir`): the job id matches the one its lock file recorded (`expkit.run.lock`),
  or the job is a restart (`SLURM_RESTART_COUNT` > 0) of a run whose lock names no other job.
Multirun jobs (a resumed Optuna study, `-m cv.fold=…`, a launcher's requeue) choose their own
directories under their sweep and do not pass through here; one sweep per sweep directory is
`expkit.sweeps.lock`'s rule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from expkit.errors import ConfigError
from expkit.run.lock import LOCK_FILE, is_rank_zero
from expkit.run.record import RESULTS_FILE

#: what a run leaves in its directory from its first moment on (Hydra's .hydra/, our lock)
RUN_MARKERS = (RESULTS_FILE, LOCK_FILE, ".hydra", "checkpoints")


def holds_a_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_MARKERS)


def _recorded_job(run_dir: Path) -> str | None:
    try:
        info = json.loads((run_dir / LOCK_FILE).read_text() or "{}")
        job = info.get("slurm_job_id") if isinstance(info, dict) else None
        return str(job) if job else None
    except (OSError, ValueError):
        return None


def same_slurm_job(run_dir: Path) -> bool:
    """Whether this process is the SLURM job that started `run_dir`, requeued or restarted."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    recorded = _recorded_job(run_dir)
    if recorded is not None:
        return recorded == job
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    except ValueError:
        return False


def refuse_new_run_in_existing_dir(args: list[str], task: str) -> None:
    """Raise when `args` (already expanded from `resume=`) start a new run in an existing run."""
    if "-m" in args or "--multirun" in args or not is_rank_zero():
        return
    if any(a.startswith("resume=") and a.split("=", 1)[1] not in ("", "null") for a in args):
        return
    typed = [
        a.split("=", 1)[1].strip("'\"") for a in args if a.lstrip("+").startswith("hydra.run.dir=")
    ]
    if not typed:
        return
    run_dir = Path(typed[-1]).expanduser()
    if not holds_a_run(run_dir) or same_slurm_job(run_dir):
        return
    allowed = (
        f"continue it with `python src/train.py resume={run_dir}`"
        if task == "train"
        else "write into a new directory"
    )
    raise ConfigError(
        f"hydra.run.dir={run_dir} already holds a run: a run directory holds one run. "
        f"Allowed: {allowed} (resume= re-applies its own overrides and takes new ones), or a "
        "hydra.run.dir that holds no run."
    )
