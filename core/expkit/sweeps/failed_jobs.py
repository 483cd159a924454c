"""What our launchers write for a sweep job that ended without handing back its result.

Shared by `tolerant_submitit_launcher` (a job SLURM ended), `gpu_pool_launcher`,
`tolerant_joblib_launcher` and `tolerant_local_launcher` (a job process that died, or that ran
past its time limit): atomic writes, the job's overrides kept for the summary, the record of a lost
job, the check of the per-job time limit, and the NaN `JobReturn` a failed job gives the sweep. Depends on Hydra and OmegaConf only (not on `src`). The leading
underscore keeps Hydra's plugin scan from importing it as a plugin.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
#: the launcher key of the per-job time limit, the same in every launcher of ours
JOB_TIMEOUT_KEY = "hydra.launcher.job_timeout_s"
#: `error.type` of a job that a launcher stopped at its time limit / that died without a result
TIME_LIMIT = "TimeLimit"
JOB_LOST = "JobLost"


class LauncherConfigError(CompactHydraException):
    """A launcher setting that is not allowed: printed as one line, no traceback."""


def check_job_timeout(value: Any) -> float | None:
    """`hydra.launcher.job_timeout_s`: a number of seconds > 0, or null (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise LauncherConfigError(
            f"{JOB_TIMEOUT_KEY}={value!r} is not allowed: a number of seconds > 0 (a job still "
            "running after that long is killed and recorded failed), or null for no limit."
        )
    if not math.isfinite(value):
        return None
    return float(value)


def time_limit_message(seconds: float, how: str = "SIGKILL") -> str:
    return (
        f"failed (time limit): the job was still running after {JOB_TIMEOUT_KEY}={seconds:g} s "
        f"and was stopped with {how}"
    )


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically: a temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves neither a torn file nor its temp
        raise


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def keep_overrides(job_dir: Path, overrides: list[str]) -> None:
    """A job that never started still gets its overrides file: the summary lists its values."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        overrides_file.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), overrides_file)


def failed_job_return(sweep_config: DictConfig, overrides: list[str], job_dir: Path) -> JobReturn:
    """The sweep's view of a failed job: NaN, as expkit/sweeps/job.py returns for one."""
    with open_dict(sweep_config):
        task_name = sweep_config.hydra.job.name
        del sweep_config["hydra"]
    return JobReturn(
        overrides=overrides,
        cfg=sweep_config,
        working_dir=str(job_dir),
        task_name=task_name,
        status=JobStatus.COMPLETED,
        _return_value=math.nan,
    )


def record_lost(
    job_dir: Path,
    overrides: list[str],
    error_type: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Mark the job failed in `job_dir/results.json`, keeping what the job itself wrote there:
    a job that recorded its own end (completed, failed, pruned) before it died keeps its word."""
    path = job_dir / RESULTS_FILE
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError):
        payload = {"task": "?", "output_dir": str(job_dir), "metrics": {}, "wall_time_s": None}
    for key, value in (extra or {}).items():
        payload.setdefault(key, value)
    if payload.get("status") not in ("completed", "failed", "pruned"):
        before = payload.get("status")
        payload.update(
            status="failed",
            error={
                "type": error_type,
                "message": message
                + (f", after the run was {before}" if before else ", before it wrote results"),
                "before": payload.get("error"),
            },
        )
    try:
        keep_overrides(job_dir, overrides)
        write_json(path, payload)
    except OSError as err:  # a full disk: the sweep still goes on (the summary lists it missing)
        log.error("Could not record the lost job in %s: %s", path, err)
    return path


def describe_exit(returncode: int | None) -> str:
    """`exit code 1`, or `SIGKILL` for a process a signal ended (`no exit code` when unknown)."""
    if returncode is None:
        return "no exit code"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def log_lost_job(idx: int, overrides: Any, message: str, path: Path) -> None:
    """The one error line a launcher logs for a job it recorded as failed."""
    log.error(
        "Job #%d (%s): %s. Recorded as failed in %s; the sweep goes on.",
        idx,
        " ".join(filter_overrides(overrides)),
        message,
        path,
    )
