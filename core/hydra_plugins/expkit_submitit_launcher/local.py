"""`hydra/launcher=submitit_local`: Hydra's submitit local launcher, made to survive a job that dies
or hangs.

The stock `LocalLauncher` waits for each job's result pickle: a job killed with SIGKILL (the OOM
killer) has none, submitit raises `UncompletedJobError`, and the sweep dies with it (no summary;
the dead job has no results.json). `TolerantLocalLauncher` changes only the waiting:

- each job runs under our controller (`_local_controller.py`, submitit's own plus a record of how
  the job's process ended), so a job that ended without a result is recorded `failed` in its
  results.json with the signal (`JobLost: the job's process ended by SIGKILL ...`); the sweep gets
  NaN for it (an Optuna trial: FAIL), the other jobs finish, the summary is written, exit 0;
- `hydra.launcher.job_timeout_s`: a job still running that long after it started is killed
  (SIGKILL, which ends a SIGSTOPped process too) and recorded `failed` (`TimeLimit: failed (time
  limit) ...`).

Depends on Hydra and submitit only (not on `src`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import typing as tp
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
from omegaconf import open_dict

from expkit.sweeps import failed_jobs as _failed_jobs
from hydra_plugins.expkit_submitit_launcher.launcher import OurSchemasInJobs, submitit_job_params

log = logging.getLogger(__name__)

CONTROLLER = "hydra_plugins.expkit_submitit_launcher._local_controller"
ENV_TIMEOUT = "TOLERANT_JOB_TIMEOUT_S"  # the same name in _local_controller.py


class TolerantLocalLauncher(OurSchemasInJobs, LocalLauncher):
    """`LocalLauncher` whose jobs' deaths and hangs are recorded, not fatal; see the module."""

    def __init__(self, job_timeout_s: float | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.job_timeout_s = job_timeout_s  # checked at launch: an error there is one line

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf
        from submitit.local.local import LocalExecutor, LocalJob

        assert self.config is not None
        job_timeout_s = self.job_timeout_s = _failed_jobs.check_job_timeout(self.job_timeout_s)

        class RecordingExecutor(LocalExecutor):
            """submitit's LocalExecutor, starting our controller instead of its own."""

            def _submit_command(self, command: str) -> LocalJob:
                env = dict(os.environ)
                ntasks = self.parameters.get("tasks_per_node", 1)
                n_gpus = self.parameters.get("gpus_per_node", 0)
                visible = self.parameters.get("visible_gpus", ())
                gpus = range(n_gpus) if visible == () else visible[:n_gpus]
                env.update(
                    SUBMITIT_LOCAL_NTASKS=str(ntasks),
                    SUBMITIT_LOCAL_COMMAND=command,
                    SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * self.parameters.get("timeout_min", 2.0))),
                    SUBMITIT_LOCAL_SIGNAL_DELAY_S=str(
                        int(self.parameters.get("signal_delay_s", 30))
                    ),
                    SUBMITIT_LOCAL_NODEID="0",
                    SUBMITIT_LOCAL_JOB_NUM_NODES="1",
                    SUBMITIT_STDERR_TO_STDOUT="1"
                    if self.parameters.get("stderr_to_stdout")
                    else "",
                    SUBMITIT_EXECUTOR="local",
                    CUDA_VISIBLE_DEVICES=",".join(str(k) for k in gpus),
                    SUBMITIT_LOCAL_WITH_SHELL="",
                )
                env[ENV_TIMEOUT] = "" if job_timeout_s is None else str(job_timeout_s)
                # the sweep's own import path, so the controller module is found
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in [*sys.path, env.get("PYTHONPATH", "")] if p
                )
                process = subprocess.Popen(
                    [sys.executable, "-m", CONTROLLER, str(self.folder)], env=env
                )
                return LocalJob(
                    folder=self.folder, job_id=str(process.pid), process=process,
                    tasks=list(range(ntasks)),
                )  # fmt: skip

        executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])
        executor._executor.__class__ = RecordingExecutor
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                key if key in base else f"local_{key}": value
                for key, value in self.params.items()
                if key not in ("submitit_folder", "max_num_timeout")
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "Submitit 'local' sweep output dir : %s%s",
            sweep_dir,
            f" (time limit {job_timeout_s:g} s per job)" if job_timeout_s else "",
        )
        job_params = submitit_job_params(job_overrides, initial_job_idx)
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        return [
            self._outcome(job, list(overrides), idx)
            for idx, (job, overrides) in enumerate(
                zip(jobs, job_overrides, strict=True), start=initial_job_idx
            )
        ]

    def _outcome(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        import submitit

        try:
            return tp.cast(JobReturn, job.results()[0])
        except submitit.core.utils.UncompletedJobError as err:
            return self._failed(job, overrides, idx, None, err)
        except submitit.core.utils.FailedJobError as err:  # raised outside the task function
            return self._failed(job, overrides, idx, str(err).strip().splitlines()[-1:], err)

    def _failed(
        self, job: Any, overrides: list[str], idx: int, error: list[str] | None, err: Exception
    ) -> JobReturn:
        from hydra_plugins.expkit_submitit_launcher._local_controller import exit_file

        try:
            ended = json.loads(exit_file(job.paths.folder, job.job_id).read_text())
        except (OSError, ValueError):
            ended = {}
        codes = ended.get("exit_codes")
        how = (
            ", ".join(_failed_jobs.describe_exit(c) for c in codes)
            if codes
            else "an unknown cause (its "
        )
        how += "" if codes else "controller, killed itself, left no exit codes)"
        if ended.get("timed_out"):
            error_type = _failed_jobs.TIME_LIMIT
            message = _failed_jobs.time_limit_message(float(ended.get("job_timeout_s") or 0))
        else:
            error_type = _failed_jobs.JOB_LOST
            message = f"the job's process ended by {how} without handing back its result"
            if error:
                message += f" ({error[0]})"
        message += f" (submitit job {job.job_id}, its log: {job.paths.stderr})"
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = idx
        job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        path = _failed_jobs.record_lost(job_dir, overrides, error_type, message)
        _failed_jobs.log_lost_job(idx, overrides, message, path)
        return _failed_jobs.failed_job_return(config, overrides, job_dir)
