"""Files the pool writes (atomically), and a pool job that ended without a result (killed, out of memory), written down as failed in its
own directory, so the sweep summary lists it with the reason and the GPU it had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra_plugins._failed_jobs import keep_overrides, write_bytes, write_json

__all__ = ["RESULTS_FILE", "record_lost_job", "write_bytes", "write_json"]

RESULTS_FILE = "results.json"


def record_lost_job(job_dir: Path, overrides: list[str], message: str, gpu: dict[str, Any]) -> Path:
    """Mark the job failed in `job_dir/results.json`, keeping what the job itself wrote there."""
    path = job_dir / RESULTS_FILE
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError):
        payload = {"task": "?", "output_dir": str(job_dir), "metrics": {}, "wall_time_s": None}
    payload.setdefault("gpu", gpu)
    if payload.get("status") not in ("completed", "failed", "pruned"):  # its own word stands
        before = payload.get("status")
        payload.update(
            status="failed",
            error={
                "type": "JobLost",
                "message": message
                + (f", after the run was {before}" if before else ", before it wrote results"),
                "before": payload.get("error"),
            },
        )
    keep_overrides(job_dir, overrides)
    write_json(path, payload)
    return path
