"""Files the pool writes (atomically), and a pool job that ended without a result (killed, out of memory), written down as failed in its
own directory, so the sweep summary lists it with the reason and the GPU it had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.sweeps.failed_jobs import (
    JOB_LOST,
    record_lost,
    write_bytes,
    write_json,
)

__all__ = ["RESULTS_FILE", "record_lost_job", "write_bytes", "write_json"]

RESULTS_FILE = "results.json"


def record_lost_job(
    job_dir: Path,
    overrides: list[str],
    message: str,
    gpu: dict[str, Any] | None,
    error_type: str = JOB_LOST,
) -> Path:
    """Mark the job failed in `job_dir/results.json`, keeping what the job itself wrote there."""
    extra = {"gpu": gpu} if gpu is not None else None
    return record_lost(job_dir, overrides, error_type, message, extra)
