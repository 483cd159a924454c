"""The pool behind `hydra/launcher=gpu_pool`: which GPUs, their slots, and jobs run across them.

- GPUs: `gpus=[0,1]` as given, else `num_gpus=N` (the first N GPUs this process sees; on a machine
  without any, N fake ones: how the tests run the pool on CPUs), else every GPU torch sees here
  (the entries of `CUDA_VISIBLE_DEVICES` when it is set, so a job gets the GPU the user meant).
- Slots: `jobs_per_gpu` per GPU. A job runs in one slot; the jobs running at once are at most the
  slots, and a GPU never has more than `jobs_per_gpu` of them. A free slot goes to the next job
  as soon as a job ends (however it ends: a job killed with SIGKILL frees its slot too).
- Each job claims its slot with an OS lock (`flock` on `<sweep_dir>/.gpus/<gpu>.<k>.lock`, taken
  by the job's own process), which dies with the process: a straggler of a killed job (a forked
  data-loader worker) holds it until it exits, and the next job waits for it.

No Hydra, no torch at import: pure logic, tested with fake GPUs and stand-in processes. An
underscore module, so Hydra's plugin scan does not re-execute it (its classes keep one identity).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hydra.errors import CompactHydraException

from expkit.sweeps.failed_jobs import describe_exit  # noqa: F401  (the pool's name for it)

log = logging.getLogger(__name__)

#: what a job process is told about its slot (read by expkit/run/gpu_slot.py and expkit/sweeps/threads.py)
ENV_GPU = "GPU_POOL_GPU"
ENV_SLOT = "GPU_POOL_SLOT"
ENV_LOCK = "GPU_POOL_LOCK"
ENV_THREADS = "GPU_POOL_THREADS"
ENV_PARENT = "GPU_POOL_PARENT"  # the sweep's pid: its job stops (SIGTERM) when it dies
ENV_KEY = "GPU_POOL_KEY"  # this launch's secret: the pickles it exchanges with its jobs are signed
#: the thread counts of the numeric libraries, capped per job as joblib caps its workers
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: the folder of a sweep directory that holds the slots' locks, job outputs and the assignment log
POOL_DIR = ".gpus"
ASSIGNMENTS = "assignments.jsonl"
#: after Ctrl+C or SIGTERM of the sweep: how long running jobs get to save and record themselves
STOP_TIMEOUT_S = 60.0


class GpuPoolError(CompactHydraException):
    """A pool that cannot run as asked: printed as one line, no traceback."""


# ---- which GPUs ------------------------------------------------------------------------------
def _torch_device_count() -> int:
    import torch  # the sweep's own process has it loaded already

    return int(torch.cuda.device_count())


def visible_gpus(
    env: Mapping[str, str] | None = None, device_count: Callable[[], int] = _torch_device_count
) -> list[str]:
    """The GPUs this process sees, as the values to put in a job's `CUDA_VISIBLE_DEVICES`."""
    env = os.environ if env is None else env
    count = device_count()
    if count <= 0:
        return []
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [entry.strip() for entry in listed.split(",") if entry.strip()][:count]


def pool_gpus(
    gpus: Sequence[Any] | None = None,
    num_gpus: int | None = None,
    env: Mapping[str, str] | None = None,
    device_count: Callable[[], int] = _torch_device_count,
) -> list[str]:
    """The GPUs of the pool (see the module's docstring); a one-line error when there are none."""
    if gpus is not None and num_gpus is not None:
        raise GpuPoolError(
            f"hydra.launcher.gpus={list(gpus)} and hydra.launcher.num_gpus={num_gpus} are both "
            "set. Allowed: one of them (gpus names the GPUs, num_gpus counts them)."
        )
    if gpus is not None:
        if isinstance(gpus, str | int):
            gpus = [gpus]
        chosen = [str(g).strip() for g in gpus]
        # an index or a (MIG) UUID; never a comma or a space, which would hand a job several GPUs
        if not chosen or any(not re.fullmatch(r"[\w./:-]+", g) for g in chosen):
            raise GpuPoolError(
                f"hydra.launcher.gpus={list(gpus)} is not allowed: give a non-empty list of GPU "
                "indices (or UUIDs) as CUDA_VISIBLE_DEVICES takes them, e.g. [0,1,2,3]."
            )
        if len(set(chosen)) != len(chosen):
            raise GpuPoolError(
                f"hydra.launcher.gpus={list(gpus)} names a GPU twice. Allowed: each GPU once; "
                "hydra.launcher.jobs_per_gpu=2 runs two jobs per GPU."
            )
        seen = visible_gpus(env, device_count)
        if seen and set(chosen) - set(seen):
            log.warning(
                "hydra.launcher.gpus=%s: this process sees only GPUs %s; jobs given another one "
                "will find no GPU.",
                chosen,
                seen,
            )
        return chosen
    if num_gpus is not None:
        if not isinstance(num_gpus, int) or isinstance(num_gpus, bool) or num_gpus < 1:
            raise GpuPoolError(
                f"hydra.launcher.num_gpus={num_gpus!r} is not allowed: a whole number >= 1 "
                "(or null: every GPU this machine has)."
            )
        seen = visible_gpus(env, device_count)
        if not seen:  # fake GPUs, e.g. to try the pool on a laptop: the jobs run with trainer=cpu
            return [str(i) for i in range(num_gpus)]
        if len(seen) < num_gpus:
            raise GpuPoolError(
                f"hydra.launcher.num_gpus={num_gpus} but this process sees {len(seen)} GPU(s) "
                f"({', '.join(seen)}). Allowed: at most {len(seen)}, or null for all of them."
            )
        return seen[:num_gpus]
    seen = visible_gpus(env, device_count)
    if not seen:
        listed = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={listed!r})" if listed is not None else ""
        raise GpuPoolError(
            f"hydra/launcher=gpu_pool found no GPU on this machine{where}: torch.cuda.device_count() "
            "is 0. Allowed: a machine with CUDA GPUs, or name the GPUs to use, e.g. "
            "hydra.launcher.gpus=[0,1] or hydra.launcher.num_gpus=2 (with trainer=cpu to try the "
            "pool without GPUs)."
        )
    return seen


# ---- slots -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """Place `index` (0..jobs_per_gpu-1) on GPU `gpu`."""

    gpu: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.gpu}.{self.index}"


def make_slots(gpus: Sequence[str], jobs_per_gpu: int) -> list[Slot]:
    """Every slot, one GPU after the other within each round (0.0, 1.0, 0.1, 1.1, ...)."""
    if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
        raise GpuPoolError(
            f"hydra.launcher.jobs_per_gpu={jobs_per_gpu!r} is not allowed: a whole number >= 1."
        )
    return [Slot(gpu, k) for k in range(jobs_per_gpu) for gpu in gpus]


def lock_path(pool_dir: Path, slot: Slot) -> Path:
    return pool_dir / f"{slot.name}.lock"


def available_cores(env: Mapping[str, str] | None = None) -> int:
    """The cores this process may use: its CPU affinity, capped by a SLURM allocation's CPUs."""
    env = os.environ if env is None else env
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        match = re.match(r"\s*(\d+)", env.get(key) or "")
        if "SLURM_JOB_ID" in env and match and int(match.group(1)) > 0:
            return min(cores, int(match.group(1)))
    return cores


def threads_per_job(cpus_per_job: int | None, concurrent: int, cores: int | None = None) -> int:
    """Threads each job may use: `cpus_per_job`, else the cores shared by the jobs running at once."""
    if cpus_per_job is not None:
        if not isinstance(cpus_per_job, int) or isinstance(cpus_per_job, bool) or cpus_per_job < 1:
            raise GpuPoolError(
                f"hydra.launcher.cpus_per_job={cpus_per_job!r} is not allowed: a whole number "
                ">= 1, or null (this machine's cores / the jobs running at once)."
            )
        return cpus_per_job
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, concurrent))


def job_env(
    base: Mapping[str, str],
    slot: Slot,
    lock: Path,
    threads: int,
    sys_path: Sequence[str],
    key: bytes = b"",
    pin_gpu: bool = True,
) -> dict[str, str]:
    """The environment a job process starts with: its GPU set before anything imports torch.

    `pin_gpu=False` (the CPU slots of `hydra/launcher=joblib`): the GPUs stay as they are."""
    env = dict(base)
    env[ENV_KEY] = key.hex()
    if pin_gpu:
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        env[ENV_GPU] = slot.gpu
        env[ENV_SLOT] = str(slot.index)
    env[ENV_LOCK] = str(lock)
    env[ENV_THREADS] = str(threads)
    env[ENV_PARENT] = str(os.getpid())
    for var in THREAD_VARS:  # what the user set explicitly stands, as with joblib's workers
        env.setdefault(var, str(threads))
    # the sweep's own import path (its src/ and hydra_plugins/), ahead of anything else
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([*(p for p in sys_path if p), *env.get("PYTHONPATH", "").split(os.pathsep)])
    ).strip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---- the pickles a launch and its jobs exchange ----------------------------------------------
class UnsignedError(ValueError):
    """A file in the sweep directory that this launch did not write: never unpickled."""


def sign(key: bytes, data: bytes) -> bytes:
    """`data` preceded by its HMAC under `key` (a line of hex)."""
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode() + b"\n" + data


def verified(key: bytes, blob: bytes, what: str) -> bytes:
    """The data of a `sign`ed blob; UnsignedError if it was not signed with `key`.

    The launch state and each job's result are pickles passed through the sweep directory; a
    sweep directory is data (anyone who can write there must not choose what gets called), so
    each side unpickles only what carries this launch's HMAC (the key never touches the disk).
    """
    digest, _, data = blob.partition(b"\n")
    expected = hmac.new(key, data, hashlib.sha256).hexdigest().encode()
    if not key or not hmac.compare_digest(digest, expected):
        raise UnsignedError(f"{what} was not written by this sweep's GPU pool: not unpickled")
    return data


def append_assignment(pool_dir: Path, entry: dict[str, Any]) -> None:
    """One line of `<sweep_dir>/.gpus/assignments.jsonl`: which job ran in which slot, when."""
    try:
        with open(pool_dir / ASSIGNMENTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
    except OSError as err:  # a full disk: a log line lost, never the sweep
        log.warning("Could not log the job's slot in %s: %s", pool_dir / ASSIGNMENTS, err)


# ---- running jobs across the slots ----------------------------------------------------------
class Process(Protocol):
    """What the pool needs of a started job (a `subprocess.Popen` is one)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


R = TypeVar("R")


class Pool:
    """Run `n` jobs over `slots`: at most one job per slot at a time, the next one as soon as a
    slot frees, each on the free slot whose GPU runs the fewest jobs.

    `start(job, slot)` starts job number `job` (0..n-1) and returns its process; `finish(job,
    slot, process)` turns an ended process into the job's result. Any exception or signal while
    jobs run (Ctrl+C, SIGTERM) stops them: SIGTERM first (a run then saves `interrupted.ckpt`),
    SIGKILL after `stop_timeout_s`.

    A job still running `job_timeout_s` after it started (hung, stopped with SIGSTOP, sleeping
    forever) gets SIGKILL, which ends even a stopped process; its number goes into `timed_out`, so
    `finish` can record it as stopped by the time limit. The other jobs go on.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        start: Callable[[int, Slot], Process],
        finish: Callable[[int, Slot, Process], R],
        poll_s: float = 0.1,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        job_timeout_s: float | None = None,
    ) -> None:
        if not slots:
            raise GpuPoolError("The GPU pool has no slot to run a job in.")
        self.slots = list(slots)
        self.start, self.finish = start, finish
        self.poll_s, self.stop_timeout_s = poll_s, stop_timeout_s
        self.job_timeout_s = job_timeout_s
        self.timed_out: set[int] = set()

    def _pick(self, free: list[Slot], running: dict[int, tuple[Slot, Process]]) -> Slot:
        load = {slot.gpu: 0 for slot in self.slots}
        for slot, _ in running.values():
            load[slot.gpu] += 1
        order = {slot: i for i, slot in enumerate(self.slots)}
        chosen = min(free, key=lambda s: (load[s.gpu], order[s]))
        free.remove(chosen)
        return chosen

    def run(self, n: int) -> list[R]:
        pending = deque(range(n))
        free = list(self.slots)
        running: dict[int, tuple[Slot, Process]] = {}
        deadlines: dict[int, float] = {}
        results: dict[int, R] = {}
        try:
            while pending or running:
                while pending and free:
                    job = pending.popleft()
                    slot = self._pick(free, running)
                    try:
                        running[job] = (slot, self.start(job, slot))
                    except BaseException:
                        free.append(slot)
                        raise
                    if self.job_timeout_s is not None:
                        deadlines[job] = time.monotonic() + self.job_timeout_s
                self._stop_overdue(running, deadlines)
                ended = [job for job, (_, proc) in running.items() if proc.poll() is not None]
                for job in ended:
                    slot, proc = running.pop(job)
                    results[job] = self.finish(job, slot, proc)
                    free.append(slot)
                if not ended:
                    time.sleep(self.poll_s)
        except BaseException:
            self.stop([proc for _, proc in running.values()])
            raise
        return [results[job] for job in range(n)]

    def _stop_overdue(
        self, running: dict[int, tuple[Slot, Process]], deadlines: dict[int, float]
    ) -> None:
        """SIGKILL each running job past its deadline (once); `timed_out` remembers which."""
        now = time.monotonic()
        for job, (_, proc) in running.items():
            if job not in self.timed_out and now >= deadlines.get(job, math.inf):
                log.warning(
                    "Job %d (pid %d) is still running after its time limit of %s s: SIGKILL.",
                    job,
                    proc.pid,
                    f"{self.job_timeout_s:g}",
                )
                self.timed_out.add(job)
                _quietly(proc.kill)

    def stop(self, processes: Sequence[Process]) -> None:
        """SIGTERM every process still running, then SIGKILL what is left after the timeout."""
        alive = [p for p in processes if p.poll() is None]
        if not alive:
            return
        log.warning(
            "Stopping %d running job(s) (pids %s): SIGTERM, then SIGKILL after %.0f s.",
            len(alive),
            ", ".join(str(p.pid) for p in alive),
            self.stop_timeout_s,
        )
        for proc in alive:
            _quietly(proc.send_signal, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _quietly(proc.kill)
                _quietly(proc.wait)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # it ended in between
        fn(*args)
