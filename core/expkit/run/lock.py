"""One writer per run directory: an OS lock (`flock`) held for the whole life of the run.

Two processes on one run (a SLURM requeue plus a manual `resume=`, a double submit) would write the
same checkpoints, history and results.json. The lock dies with its process, so a run killed with
SIGKILL can be resumed at once: there is no stale lock to clear. The lock file records who holds
it (host, PID, start time) for the error the second writer prints. DDP ranks > 0 work inside
their rank 0's run and take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from expkit.errors import RunDirLockedError

LOCK_FILE = ".lock"

#: run directories this process holds (re-entrant: `resume=` locks before Hydra starts, the task again)
_held: dict[Path, int] = {}


def _holder() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # a SLURM requeue of this job continues this run (expkit/run/one_run.py)
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def describe_holder(lock_path: Path) -> str:
    """Who holds a lock, from the details its holder wrote into the lock file."""
    try:
        info = json.loads(lock_path.read_text() or "{}")
        return f"host {info['host']}, PID {info['pid']}, since {info['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


def acquire(run_dir: str | Path) -> bool:
    """Lock `run_dir` for this process (True if newly taken, False if already held here)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirLockedError(
            f"Run directory {run_dir} is in use by another run ({describe_holder(lock_path)}): one "
            "writer per run. Wait for it to end (or stop it), then run this command again."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder()).encode())
    _held[run_dir] = fd
    return True


def release(run_dir: str | Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def is_rank_zero() -> bool:
    """Rank 0 of a DDP job, or a plain process (the same env variables Lightning reads)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key) not in (None, "", "0"):
            return False
    return True


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of `run_dir` within the block (rank 0 only; re-entrant in one process)."""
    taken = is_rank_zero() and acquire(run_dir)
    try:
        yield
    finally:
        if taken:
            release(run_dir)
