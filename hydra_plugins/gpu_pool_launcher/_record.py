"""Files the pool writes (atomically), and a pool job that ended without a result (killed, out of memory), written down as failed in its
own directory, so the sweep summary lists it with the reason and the GPU it had."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RESULTS_FILE = "results.json"


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
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():  # the job never started: the summary still lists its values
        overrides_file.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), overrides_file)
    write_json(path, payload)
    return path
