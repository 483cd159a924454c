"""What our launchers write for a sweep job that ended without handing back its result.

Shared by `tolerant_submitit_launcher` (a job SLURM ended) and `gpu_pool_launcher` (a job process
that died): atomic writes, the job's overrides kept for the summary, and the NaN `JobReturn` a
failed job gives the sweep. Depends on Hydra and OmegaConf only (not on `src`). The leading
underscore keeps Hydra's plugin scan from importing it as a plugin.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically: a temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def keep_overrides(job_dir: Path, overrides: list[str]) -> None:
    """A job that never started still gets its overrides file: the summary lists its values."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        overrides_file.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), overrides_file)


def failed_job_return(sweep_config: DictConfig, overrides: list[str], job_dir: Path) -> JobReturn:
    """The sweep's view of a failed job: NaN, as src/sweeps/job.py returns for one."""
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
