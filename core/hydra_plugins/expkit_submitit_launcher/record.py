"""A job that SLURM ended without a result, written down as failed in its own directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from expkit.sweeps.failed_jobs import keep_overrides, write_json

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


# ---- recording a job that SLURM ended --------------------------------------------------------
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
    keep_overrides(job_dir, overrides)
    write_json(path, payload)
    return path
