"""Hydra's submitit SLURM launcher, made to survive what SLURM does to a job.

`hydra_plugins.hydra_submitit_launcher.SlurmLauncher` submits one SLURM job per sweep job and then
waits for each job's result pickle. A job that SLURM ends without one (cancelled, killed at its time
limit, out of memory, node failure) makes submitit raise `UncompletedJobError` and the whole sweep,
summary included, dies with it; without SLURM accounting (`sacct` failing) it never even sees that
the job ended and waits forever. `TolerantSlurmLauncher` changes only that part:

- before anything is submitted, the resources asked for are checked against the partition
  (`sinfo`): a job that no node could ever run is refused with one line naming the value and
  what the partition offers, instead of pending forever or an sbatch traceback;
- sbatch's own refusal reaches the user as one line;
- each job's end is seen through submitit (sacct) and `scontrol show job`, so a cluster without
  accounting works too;
- a job that ended without a result is recorded as failed: its `results.json` (written here if the
  job wrote none, or turned from `interrupted` into `failed`) says `failed` with SLURM's state,
  reason and exit code, and the sweep gets NaN for it, as for any failed job (expkit/sweeps/job.py).
  No other job is cancelled; the sweep and its summary finish.

It depends on Hydra and submitit only (not on `src`): Hydra loads it from the `hydra_plugins`
package whatever the task.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

from expkit.sweeps import failed_jobs as _failed_jobs
from hydra_plugins.expkit_joblib_launcher.schemas import restore_hydra_state

# module attributes, looked up at call time: Hydra's plugin scan re-executes every module of
# hydra_plugins in place, so a name bound by `from … import` could name a stale class
from hydra_plugins.expkit_submitit_launcher import record, resources

log = logging.getLogger(__name__)

#: job states after which SLURM runs nothing more of the job (requeued/pending/running ones are not)
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}
#: how long a job that SLURM says has ended may take to show its result pickle (shared disks lag)
RESULT_GRACE_S = 15.0
#: seconds between two `scontrol show job` of one job while waiting
SCONTROL_EVERY_S = 5.0


# ---- the launchers -----------------------------------------------------------------------------
class OurSchemasInJobs:
    """Submitit's job call (run in the job's own process) with Hydra's state restored together
    with our launcher schemas, which the plugin scan of that restore would otherwise overwrite
    with the stock ones (`restore_hydra_state`); the stock call's own `set_state` with the same
    state then scans no more. Mixed into both submitit launchers, local and SLURM."""

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: Any,
    ) -> JobReturn:
        restore_hydra_state(singleton_state)
        call = super().__call__  # type: ignore[misc]
        return call(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)


class TolerantSlurmLauncher(OurSchemasInJobs, SlurmLauncher):
    """`SlurmLauncher` that checks resources first and records jobs SLURM ends as failed."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        resources.check_resources(self.params)
        executor = self._executor(submitit)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params = submitit_job_params(job_overrides, initial_job_idx)
        # submitit prints sbatch's stderr when sbatch fails: it is in the one-line error instead
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except Exception as err:  # submitit's FailedJobError carries sbatch's stderr
            raise resources.SlurmLaunchError(
                f"sbatch refused the sweep: {resources._one_line(err)}"
            ) from err
        sys.stderr.write(stderr.getvalue())
        log.info("Submitted SLURM job(s) %s", ", ".join(job.job_id for job in jobs))
        return [
            self._outcome(job, list(overrides), idx)
            for idx, (job, overrides) in enumerate(
                zip(jobs, job_overrides, strict=True), start=initial_job_idx
            )
        ]

    def _executor(self, submitit: Any) -> Any:
        """The same executor SlurmLauncher builds (its parameter mapping), errors made one line."""
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        init_keys = {"submitit_folder", "max_num_timeout"}
        try:
            executor = submitit.AutoExecutor(
                cluster="slurm",
                folder=self.params["submitit_folder"],
                slurm_max_num_timeout=self.params["max_num_timeout"],
            )
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    key if key in base else f"slurm_{key}": value
                    for key, value in self.params.items()
                    if key not in init_keys
                }
            )
        except (RuntimeError, ValueError) as err:
            raise resources.SlurmLaunchError(
                f"hydra/launcher=slurm: {resources._one_line(err)}"
            ) from err
        return executor

    # ---- waiting for one job
    def _outcome(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        import submitit

        ended = self._wait(job)
        if self._has_results(job):
            try:
                return job.results()[0]
            except submitit.core.utils.FailedJobError as err:  # raised outside the task function
                return self._failed(job, overrides, idx, ended, resources._one_line(err))
            except submitit.core.utils.UncompletedJobError:
                pass
        return self._failed(job, overrides, idx, ended, None)

    @staticmethod
    def _tasks(job: Any) -> list[Any]:
        return [job.task(i) for i in range(job.num_tasks)] if job.num_tasks > 1 else [job]

    def _has_results(self, job: Any) -> bool:
        return all(task.paths.result_pickle.exists() for task in self._tasks(job))

    def _wait(self, job: Any) -> dict[str, str]:
        """Until the job's results exist or SLURM says it ended; then what scontrol says of it."""
        info: dict[str, str] = {}
        next_scontrol = 0.0
        while not self._has_results(job):
            if time.monotonic() >= next_scontrol:
                info = resources.slurm_job_info(job.job_id) or info
                next_scontrol = time.monotonic() + SCONTROL_EVERY_S
                if info.get("JobState") in FINAL_STATES:
                    break
            if job.done():  # submitit: the result pickle, or sacct's final state
                break
            time.sleep(1)
        else:
            return info
        info = resources.slurm_job_info(job.job_id) or info
        # a completed job's result may lag on a shared disk; a cancelled or killed one has none
        grace = RESULT_GRACE_S if info.get("JobState") in ("COMPLETED", None) else 2.0
        deadline = time.monotonic() + grace
        while not self._has_results(job) and time.monotonic() < deadline:
            time.sleep(0.5)
        return info

    def _failed(
        self, job: Any, overrides: list[str], idx: int, info: dict[str, str], error: str | None
    ) -> JobReturn:
        accounting = resources.sacct_info(job.job_id)
        slurm = {
            "job_id": job.job_id,
            "state": accounting.get("State") or info.get("JobState") or "UNKNOWN",
            "reason": info.get("Reason") or accounting.get("Reason"),
            "exit_code": info.get("ExitCode") or accounting.get("ExitCode"),
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
        }
        if error:
            slurm["error"] = error
        sweep_config = self._job_config(overrides, idx)
        job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        path = record.record_slurm_failure(job_dir, overrides, slurm)
        log.error(
            "Job #%d (%s), SLURM job %s, ended %s without a result: recorded as failed in %s; "
            "the sweep goes on. Its log: %s",
            idx,
            " ".join(filter_overrides(overrides)),
            job.job_id,
            slurm["state"],
            path,
            job.paths.stderr,
        )
        return _failed_jobs.failed_job_return(sweep_config, overrides, job_dir)

    def _job_config(self, overrides: list[str], idx: int) -> Any:
        """This job's config as the job itself composes it (for its directory)."""
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = idx
        return config


def submitit_job_params(
    job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[tuple[list[str], str, int, str, Any]]:
    """The arguments submitit's `map_array` gives each job (as hydra-submitit-launcher builds
    them), logging each job's overrides: shared by the SLURM and the local launcher."""
    from hydra.core.singleton import Singleton

    params = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
    return params
