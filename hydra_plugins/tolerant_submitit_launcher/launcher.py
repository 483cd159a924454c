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
  reason and exit code, and the sweep gets NaN for it, as for any failed job (src/sweeps/job.py).
  No other job is cancelled; the sweep and its summary finish.

It depends on Hydra and submitit only (not on `src`): Hydra loads it from the `hydra_plugins`
package whatever the task.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
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


class SlurmLaunchError(CompactHydraException):
    """A sweep that cannot be submitted as asked: printed as one line, no traceback."""


# ---- asking SLURM ----------------------------------------------------------------------------
def _run(command: list[str], timeout: float = 30) -> str:
    return subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def _one_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (sbatch's `error:` line if any)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no message)"])[-1]


def slurm_job_info(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Reason, ExitCode, ...); {} once SLURM forgot it."""
    try:
        out = _run(["scontrol", "show", "job", "-o", job_id], timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))


def sacct_info(job_id: str) -> dict[str, str]:
    """State (e.g. `CANCELLED by 0`), ExitCode and Reason from accounting; {} without it."""
    try:
        out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Reason"])
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    return dict(zip(("State", "ExitCode", "Reason"), rows[-1], strict=True)) if rows else {}


def partition_nodes(partition: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The partition (the default one when None) and its nodes: cpus, memory_mb, gpus each."""
    try:
        out = _run(["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G"])
    except FileNotFoundError as err:
        raise SlurmLaunchError(
            "hydra/launcher=slurm needs SLURM, but `sinfo` is not installed here. Allowed: run on a "
            "SLURM login node, or start a local cluster (scripts/slurm/local_cluster.sh start)."
        ) from err
    except (OSError, subprocess.SubprocessError) as err:
        message = _one_line(getattr(err, "stderr", None) or err)
        raise SlurmLaunchError(
            f"hydra/launcher=slurm cannot reach SLURM (sinfo: {message}). Allowed: a running "
            "cluster (scripts/slurm/local_cluster.sh start for a local one)."
        ) from err
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
    names = list(dict.fromkeys(row[0] for row in rows))
    if partition is None:
        defaults = [name for name in names if name.endswith("*")]
        if not defaults:
            raise SlurmLaunchError(
                f"hydra.launcher.partition=null but this cluster has no default partition. "
                f"Allowed: {', '.join(names) or '(none listed by sinfo)'}."
            )
        partition = defaults[0]
    nodes = [
        {"name": row[1], "cpus": int(row[2]), "memory_mb": int(row[3]), "gpus": _gpus(row[4])}
        for row in rows
        if row[0].rstrip("*") == partition.rstrip("*")
    ]
    if not nodes:
        allowed = ", ".join(name.rstrip("*") for name in names) or "(none listed by sinfo)"
        raise SlurmLaunchError(
            f"hydra.launcher.partition={partition!r} does not exist on this cluster. Allowed: {allowed}."
        )
    return partition.rstrip("*"), nodes


def _gpus(gres: str) -> int:
    """GPUs in a node's GRES: `gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:2,shard:8` -> 4, 4, 2."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _as_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SlurmLaunchError(
            f"hydra.launcher.{name}={value!r} is not allowed: an integer >= {minimum} (or null)."
        )
    return value


def check_resources(params: dict[str, Any]) -> None:
    """Refuse, before submitting, a job that no node of its partition could ever run."""
    nodes_asked = _as_int("nodes", params.get("nodes", 1), 1) or 1
    tasks = params.get("tasks_per_node", 1)
    if tasks == 0:
        raise SlurmLaunchError(
            "hydra.launcher.tasks_per_node=0 is not allowed (it follows gpus_per_node=0 in "
            "hydra/launcher=slurm, and sbatch would get --ntasks-per-node=0). Allowed: >= 1; for "
            "CPU jobs use hydra/launcher=slurm_cpu, or set hydra.launcher.tasks_per_node=1."
        )
    tasks = _as_int("tasks_per_node", tasks, 1) or 1
    cpus = _as_int("cpus_per_task", params.get("cpus_per_task"), 1)
    gpus = _as_int("gpus_per_node", params.get("gpus_per_node"), 0)
    mem_gb = params.get("mem_gb")
    if mem_gb is not None and (isinstance(mem_gb, bool) or not isinstance(mem_gb, int | float)):
        raise SlurmLaunchError(f"hydra.launcher.mem_gb={mem_gb!r} is not allowed: a number of GB.")

    partition, nodes = partition_nodes(params.get("partition"))
    where = f"partition {partition!r}"
    if nodes_asked > len(nodes):
        raise SlurmLaunchError(
            f"hydra.launcher.nodes={nodes_asked} is more than {where} has: {len(nodes)} node(s)."
        )
    most_gpus = max(n["gpus"] for n in nodes)
    if gpus and gpus > most_gpus:
        offer = f"at most {most_gpus} GPUs per node" if most_gpus else "no GPUs (GRES gpu)"
        raise SlurmLaunchError(
            f"hydra.launcher.gpus_per_node={gpus} but the nodes of {where} have {offer}. Allowed: "
            f"another partition (hydra.launcher.partition=...), or hydra/launcher=slurm_cpu."
        )
    most_cpus = max(n["cpus"] for n in nodes)
    if cpus is not None and cpus * tasks > most_cpus:
        raise SlurmLaunchError(
            f"hydra.launcher.cpus_per_task={cpus} x tasks_per_node={tasks} = {cpus * tasks} CPUs "
            f"per node, but the nodes of {where} have at most {most_cpus} CPUs."
        )
    if cpus is None and tasks > most_cpus:
        raise SlurmLaunchError(
            f"hydra.launcher.tasks_per_node={tasks} needs {tasks} CPUs per node, but the nodes of "
            f"{where} have at most {most_cpus} CPUs."
        )
    most_mb = max(n["memory_mb"] for n in nodes)
    if mem_gb is not None and mem_gb * 1024 > most_mb:
        raise SlurmLaunchError(
            f"hydra.launcher.mem_gb={mem_gb} is more than any node of {where} has: at most "
            f"{most_mb / 1024:.1f} GB."
        )


# ---- recording a job that SLURM ended --------------------------------------------------------
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(payload, indent=2, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def record_slurm_failure(job_dir: Path, overrides: list[str], slurm: dict[str, Any]) -> Path:
    """Mark the job failed in `job_dir/results.json` with what SLURM said; keep what it wrote."""
    path = job_dir / RESULTS_FILE
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        payload = {"metrics": {}, "wall_time_s": None, "output_dir": str(job_dir)}
    if payload.get("status") in ("completed", "failed"):
        payload.setdefault("slurm", slurm)  # the job's own word on how it ended stands
    else:
        before = payload.get("status")
        message = f"SLURM ended job {slurm['job_id']} as {slurm['state']}"
        if slurm.get("reason") and slurm["reason"] != "None":
            message += f" (reason: {slurm['reason']})"
        message += f", exit code {slurm.get('exit_code') or '?'}, "
        message += f"after the run was {before}" if before else "before the run wrote its results"
        payload.update(
            status="failed",
            slurm=slurm,
            error={
                "type": "SlurmJobEnded",
                "message": message,
                "before": payload.get("error"),
            },
        )
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():  # the job never started: the summary still lists its values
        overrides_file.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), overrides_file)
    _write_json(path, payload)
    return path


# ---- the launcher ----------------------------------------------------------------------------
class TolerantSlurmLauncher(SlurmLauncher):
    """`SlurmLauncher` that checks resources first and records jobs SLURM ends as failed."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit
        from hydra.core.singleton import Singleton

        assert self.config is not None
        check_resources(self.params)
        executor = self._executor(submitit)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        # submitit prints sbatch's stderr when sbatch fails: it is in the one-line error instead
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except Exception as err:  # submitit's FailedJobError carries sbatch's stderr
            raise SlurmLaunchError(f"sbatch refused the sweep: {_one_line(err)}") from err
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
            raise SlurmLaunchError(f"hydra/launcher=slurm: {_one_line(err)}") from err
        return executor

    # ---- waiting for one job
    def _outcome(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        import submitit

        ended = self._wait(job)
        if self._has_results(job):
            try:
                return job.results()[0]
            except submitit.core.utils.FailedJobError as err:  # raised outside the task function
                return self._failed(job, overrides, idx, ended, _one_line(err))
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
                info = slurm_job_info(job.job_id) or info
                next_scontrol = time.monotonic() + SCONTROL_EVERY_S
                if info.get("JobState") in FINAL_STATES:
                    break
            if job.done():  # submitit: the result pickle, or sacct's final state
                break
            time.sleep(1)
        else:
            return info
        info = slurm_job_info(job.job_id) or info
        # a completed job's result may lag on a shared disk; a cancelled or killed one has none
        grace = RESULT_GRACE_S if info.get("JobState") in ("COMPLETED", None) else 2.0
        deadline = time.monotonic() + grace
        while not self._has_results(job) and time.monotonic() < deadline:
            time.sleep(0.5)
        return info

    def _failed(
        self, job: Any, overrides: list[str], idx: int, info: dict[str, str], error: str | None
    ) -> JobReturn:
        accounting = sacct_info(job.job_id)
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
        path = record_slurm_failure(job_dir, overrides, slurm)
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
        with open_dict(sweep_config):
            task_name = sweep_config.hydra.job.name
            del sweep_config["hydra"]
        return JobReturn(
            overrides=overrides,
            cfg=sweep_config,
            working_dir=str(job_dir),
            task_name=task_name,
            status=JobStatus.COMPLETED,
            _return_value=math.nan,  # what a failed job returns (src/sweeps/job.py)
        )

    def _job_config(self, overrides: list[str], idx: int) -> Any:
        """This job's config as the job itself composes it (for its directory)."""
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = idx
        return config
