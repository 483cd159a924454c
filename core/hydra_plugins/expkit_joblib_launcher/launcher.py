"""`hydra/launcher=joblib`: the jobs of a sweep in parallel on this machine, each in a process of
its own, so that no job's death ends the others.

    python src/train.py -m hydra/launcher=joblib hydra.launcher.n_jobs=2 optimizer.lr=1e-3,1e-2
    ... hydra.launcher.job_timeout_s=3600      # a job still running after an hour: killed, failed

Hydra's joblib launcher runs the jobs in loky's reused worker processes. When one worker dies (the
kernel's OOM killer, `kill -9`, a segfault) loky breaks the whole pool: every job in flight is lost,
`TerminatedWorkerError` ends the sweep, no summary is written, and the dead job has no
results.json. A worker that hangs (SIGSTOP, a deadlock) holds the sweep forever. Neither can be
fixed around loky, which decides alone to kill all its workers; so this launcher keeps joblib's
preset, its key `n_jobs` (-1: one job per core this process may use, as joblib counts them) and
its cap of each job's threads at cores / jobs, and runs the jobs in the process pool of
`hydra/launcher=gpu_pool` with one CPU slot per parallel job and the GPUs left as they are:

- a job whose process dies without its result is recorded `failed` in its results.json with the
  signal (`JobLost: the job's process ended by SIGKILL ...`); the other jobs go on; the sweep
  writes its summary and exits 0;
- a job still running `job_timeout_s` after it started is killed (SIGKILL ends a stopped process
  too) and recorded `failed` (`TimeLimit: failed (time limit) ...`);
- Ctrl+C or SIGTERM of the sweep stops the running jobs (SIGTERM, then SIGKILL after
  `stop_timeout_s`), and the jobs stop when the sweep's process dies.

The price: each job is a fresh process (its imports are paid per job, not per worker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from expkit.sweeps import failed_jobs as _failed_jobs

# looked up at call time (Hydra's plugin scan re-executes non-underscore plugin modules in place)
from hydra_plugins.expkit_gpu_pool_launcher import _pool
from hydra_plugins.expkit_gpu_pool_launcher.gpu_pool_launcher import GpuPoolLauncher

log = logging.getLogger(__name__)

#: the folder of the sweep directory with the slots' locks and each job's console output
POOL_DIR = ".jobs"
#: joblib's settings of how it ships data to its workers: meaningless for a job of its own process
_IGNORED = ("pre_dispatch", "batch_size", "temp_folder", "max_nbytes", "mmap_mode", "verbose")


def parallel_jobs(n_jobs: Any) -> int:
    """joblib's reading of `n_jobs` (-1: every core this process may use, -2: all but one...)."""
    import joblib

    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise _failed_jobs.LauncherConfigError(
            f"hydra.launcher.n_jobs={n_jobs!r} is not allowed: a whole number >= 1 (jobs at once), "
            "or -1 for one per core this process may use (-2: all but one, ...)."
        )
    return max(1, int(joblib.effective_n_jobs(n_jobs)))


class TolerantJoblibLauncher(GpuPoolLauncher):
    """Jobs in processes of their own over `n_jobs` CPU slots; see the module's docstring."""

    pin_gpu = False
    pool_dir_name = POOL_DIR

    def __init__(
        self,
        n_jobs: int = -1,
        job_timeout_s: float | None = None,
        stop_timeout_s: float = _pool.STOP_TIMEOUT_S,
        backend: str | None = None,
        prefer: str | None = "processes",
        require: str | None = None,
        timeout: float | None = None,
        **ignored: Any,
    ) -> None:
        if timeout is not None and job_timeout_s is None:  # joblib's own name for it
            job_timeout_s = timeout
        self._joblib = {"backend": backend, "prefer": prefer, "require": require}
        self._unknown = sorted(set(ignored) - set(_IGNORED))
        super().__init__(stop_timeout_s=stop_timeout_s, job_timeout_s=job_timeout_s)
        self.n_jobs = n_jobs

    def _slots(self) -> list[Any]:
        """Checked here, at launch, not at instantiation: Hydra wraps an error raised there."""
        backend, prefer = self._joblib["backend"], self._joblib["prefer"]
        if backend not in (None, "loky", "multiprocessing") or prefer not in (None, "processes"):
            raise _failed_jobs.LauncherConfigError(
                f"hydra.launcher.backend={backend!r} prefer={prefer!r} is not allowed: each job "
                "runs in a process of its own (backend null, loky or multiprocessing; prefer "
                "processes); for jobs in the sweep's own process use hydra/launcher=basic."
            )
        if self._joblib["require"] is not None:
            raise _failed_jobs.LauncherConfigError(
                f"hydra.launcher.require={self._joblib['require']!r} is not allowed: jobs share "
                "no memory here (null)."
            )
        if self._unknown:
            raise _failed_jobs.LauncherConfigError(
                f"hydra.launcher.{self._unknown[0]} is not a setting of hydra/launcher=joblib. "
                "Allowed: n_jobs, job_timeout_s, stop_timeout_s."
            )
        return _pool.make_slots(["cpu"], parallel_jobs(self.n_jobs))

    def _describe(self, slots: Sequence[Any]) -> str:
        return f"joblib launcher, n_jobs={self.n_jobs} (each job a process of its own)"

    def _where(self, slot: Any, preposition: str = "") -> str:
        return f"{preposition} slot {slot.name}".strip()
