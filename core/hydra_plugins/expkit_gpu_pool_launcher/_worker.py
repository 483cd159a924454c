"""One job of `hydra/launcher=gpu_pool`, in a process of its own.

    python -m hydra_plugins.expkit_gpu_pool_launcher._worker <launch.pkl> <job.json> <result.pkl>

The launcher starts it with `CUDA_VISIBLE_DEVICES` set to the job's GPU, so torch sees that GPU
alone from its first import. It asks to be stopped (SIGTERM) if the sweep's process dies, and
before anything else it claims the job's slot (an OS lock that dies
with the process); then it runs the job exactly as Hydra's joblib launcher runs one in a worker
(`execute_job`) and leaves the `JobReturn` in `<result.pkl>` (written atomically). The three
files carry an HMAC under a key the launcher passes in the environment only: neither side reads
a file it cannot verify (a pickle could run code; the overrides choose what the job builds). A job that
never gets that far (killed, out of memory) leaves no result: the launcher records it as failed.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra_plugins.expkit_gpu_pool_launcher import _pool

#: seconds between two tries of a slot still held by a process of the job before (a straggler)
RETRY_S = 0.5


def die_with_the_sweep(parent: int) -> None:
    """SIGTERM this job when the sweep's process dies, even by SIGKILL (Linux: PR_SET_PDEATHSIG),
    so no orphaned job keeps a GPU; a run then saves `interrupted.ckpt` and records `interrupted`.
    Elsewhere: nothing (the job runs to its end)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM) != 0:  # 1 = PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def claim_slot(lock: Path, job: int) -> int:
    """Lock `lock` for this process (waiting while another holds it); the descriptor keeps it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    waited_since = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if waited_since is None:
                waited_since = time.monotonic()
                holder = Path(lock).read_text(errors="replace").strip() or "?"
                sys.stderr.write(f"GPU pool: slot {lock.name} still held by {holder}: waiting\n")
            time.sleep(RETRY_S)
    if waited_since is not None:
        sys.stderr.write(
            f"GPU pool: slot {lock.name} free after {time.monotonic() - waited_since:.1f} s\n"
        )
    holder = {"job": job, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    return fd


def execute_job(
    idx: int,
    overrides: list[str],
    hydra_context: Any,
    config: Any,
    task_function: Any,
    singleton_state: dict[Any, Any],
) -> Any:
    """`hydra_plugins.hydra_joblib_launcher._core.execute_job`, the same steps, with our launcher
    schemas put back after the plugin scan that restoring Hydra's state runs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    from hydra_plugins.expkit_joblib_launcher.schemas import restore_hydra_state

    setup_globals()
    restore_hydra_state(singleton_state)  # not Singleton.set_state alone: see restore_hydra_state
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def write_result(path: Path, job_return: Any, key: bytes) -> None:
    """Pickle the JobReturn, signed, atomically; an exception that does not pickle is passed on
    as text."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(job_return)
    except Exception as err:  # e.g. an exception object holding a lock or a file
        value = getattr(job_return, "_return_value", None)
        job_return._return_value = RuntimeError(f"{type(value).__name__}: {value}")
        sys.stderr.write(f"GPU pool: the job's result did not pickle ({err}); passed on as text\n")
        data = cloudpickle.dumps(job_return)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(_pool.sign(key, data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    launch_file, job_file, result_file = (Path(a) for a in argv[1:4])
    if os.environ.get(_pool.ENV_PARENT, "").isdigit():
        die_with_the_sweep(int(os.environ[_pool.ENV_PARENT]))
    key = bytes.fromhex(os.environ.pop(_pool.ENV_KEY, ""))  # the job's own code never sees it
    job = json.loads(_pool.verified(key, job_file.read_bytes(), str(job_file)))
    # first the slot, before the job's code imports anything (torch reads CUDA_VISIBLE_DEVICES)
    _fd = claim_slot(Path(os.environ[_pool.ENV_LOCK]), job["idx"])  # held until the process ends
    import cloudpickle

    state = _pool.verified(key, launch_file.read_bytes(), str(launch_file))
    hydra_context, config, task_function, singleton_state = cloudpickle.loads(state)
    job_return = execute_job(
        job["idx"], job["overrides"], hydra_context, config, task_function, singleton_state
    )
    write_result(result_file, job_return, key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
