"""`hydra/launcher=gpu_pool`: the jobs of a sweep in parallel on one machine, one GPU each.

    python src/train.py -m hydra/launcher=gpu_pool trainer=gpu optimizer.lr=1e-3,1e-2 seed=1,2,3
    ... hydra.launcher.jobs_per_gpu=2          # two jobs share each GPU (small models)
    ... hydra.launcher.gpus=[0,2]               # only these GPUs

Every GPU gets `jobs_per_gpu` slots; a job runs in a process of its own, started with
`CUDA_VISIBLE_DEVICES=<its GPU>` (so torch sees that GPU alone, as `cuda:0`) and torch's threads
set to this machine's cores over the jobs running at once. When a job ends, however it ends, the
next one starts in its slot. The job claims its slot with an OS lock that dies with its process
(`_worker.py`), and records the GPU in its `results.json` (`gpu`: index, slot, name), so the
sweep summary has a `gpu` column. `<sweep_dir>/.gpus/` keeps each job's console output
(`job-N.out`) and the log of which job ran where and when (`assignments.jsonl`).

A job whose process dies without handing back its result (SIGKILL, the kernel's OOM killer, a
segfault) is recorded as failed in its `results.json` with how it ended and its GPU; the sweep
goes on and returns NaN for it, as for any failed job (expkit/sweeps/job.py). Ctrl+C or SIGTERM of
the sweep stops the running jobs with SIGTERM (each saves `interrupted.ckpt`); on Linux so does a
SIGKILL of the sweep's process (the jobs ask for it: PR_SET_PDEATHSIG), so no orphan keeps a GPU.

Why not Hydra's joblib launcher: its worker processes outlive a job, and a process whose CUDA is
initialised cannot move to another GPU; a worker killed mid-job breaks the whole joblib pool.

It depends on Hydra and cloudpickle only (not on `src`): Hydra loads it from the `hydra_plugins`
package whatever the task. Helpers live in underscore modules, looked up at call time: Hydra's
plugin scan re-executes every other module of `hydra_plugins` in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from expkit.sweeps import failed_jobs as _failed_jobs
from hydra_plugins.expkit_gpu_pool_launcher import _pool, _record

log = logging.getLogger(__name__)

WORKER_MODULE = "hydra_plugins.expkit_gpu_pool_launcher._worker"


def _gpu_record(slot: Any, threads: int) -> dict[str, Any]:
    """What a job records of its GPU (expkit/run/gpu_slot.py), for a job that could not record it."""
    gpu = slot.gpu
    index = int(gpu) if gpu.isdigit() else gpu
    return {"index": index, "slot": slot.index, "name": None, "threads": threads}


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While jobs run, SIGTERM to the sweep raises SystemExit(143), so the pool stops its jobs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class GpuPoolLauncher(Launcher):
    """Runs each job in its own process on one GPU slot; see the module's docstring."""

    def __init__(
        self,
        gpus: Sequence[Any] | None = None,
        num_gpus: int | None = None,
        jobs_per_gpu: int = 1,
        cpus_per_job: int | None = None,
        stop_timeout_s: float = _pool.STOP_TIMEOUT_S,
        job_timeout_s: float | None = None,
    ) -> None:
        self.job_timeout_s = job_timeout_s  # checked at launch: an error there is one line
        self.gpus = list(gpus) if isinstance(gpus, Sequence) and not isinstance(gpus, str) else gpus
        self.num_gpus = num_gpus
        self.jobs_per_gpu = jobs_per_gpu
        self.cpus_per_job = cpus_per_job
        self.stop_timeout_s = stop_timeout_s
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    #: each job's CUDA_VISIBLE_DEVICES is its slot's GPU (the CPU pool of joblib leaves it as is)
    pin_gpu = True
    #: the folder of the sweep directory with the slots' locks, the jobs' output, the assignments
    pool_dir_name = _pool.POOL_DIR

    def _slots(self) -> list[Any]:
        gpus = _pool.pool_gpus(self.gpus, self.num_gpus)
        return _pool.make_slots(gpus, self.jobs_per_gpu)

    def _describe(self, slots: Sequence[Any]) -> str:
        gpus = list(dict.fromkeys(slot.gpu for slot in slots))
        return f"GPU pool on GPU(s) {','.join(gpus)}, {self.jobs_per_gpu} job(s) per GPU"

    def _where(self, slot: Any, preposition: str = "") -> str:
        where = f"GPU {slot.gpu} (slot {slot.name})"
        return f"{preposition} {where}".strip()

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import cloudpickle
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, setup_globals

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        self.job_timeout_s = _failed_jobs.check_job_timeout(self.job_timeout_s)
        slots = self._slots()
        concurrent = min(len(slots), len(job_overrides))
        threads = _pool.threads_per_job(self.cpus_per_job, concurrent)

        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        pool_dir = sweep_dir / self.pool_dir_name
        pool_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "%s: %d job(s) (%d at once), %d CPU thread(s) each%s; sweep output dir: %s",
            self._describe(slots),
            len(job_overrides),
            concurrent,
            threads,
            f", time limit {self.job_timeout_s:g} s each" if self.job_timeout_s else "",
            sweep_dir,
        )
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))

        launch_file = pool_dir / f"launch-{initial_job_idx}-{os.getpid()}.pkl"
        state = (self.hydra_context, self.config, self.task_function, Singleton.get_state())
        key = secrets.token_bytes(32)  # signs the pickles of this launch (_pool.verified)
        _record.write_bytes(launch_file, _pool.sign(key, cloudpickle.dumps(state)))
        started: dict[int, float] = {}

        def start(i: int, slot: Any) -> subprocess.Popen:
            idx = initial_job_idx + i
            job_file = pool_dir / f"job-{idx}.json"
            spec = json.dumps({"idx": idx, "overrides": list(job_overrides[i])}).encode()
            _record.write_bytes(job_file, _pool.sign(key, spec))  # its overrides: signed too
            result = pool_dir / f"job-{idx}.result.pkl"
            result.unlink(missing_ok=True)
            lock = _pool.lock_path(pool_dir, slot)
            env = _pool.job_env(os.environ, slot, lock, threads, sys.path, key, self.pin_gpu)
            command = [sys.executable, "-m", WORKER_MODULE, str(launch_file), str(job_file)]
            with open(pool_dir / f"job-{idx}.out", "ab") as out:
                proc = subprocess.Popen(
                    [*command, str(result)], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            started[idx] = time.monotonic()
            _pool.append_assignment(
                pool_dir,
                {"event": "start", "job": idx, "gpu": slot.gpu, "slot": slot.index,
                 "pid": proc.pid, "time": time.time()},
            )  # fmt: skip
            log.info("#%d started in %s (pid %d)", idx, self._where(slot), proc.pid)
            return proc

        def finish(i: int, slot: Any, proc: subprocess.Popen) -> JobReturn:
            idx = initial_job_idx + i
            returncode = proc.returncode
            _pool.append_assignment(
                pool_dir,
                {"event": "end", "job": idx, "gpu": slot.gpu, "slot": slot.index,
                 "pid": proc.pid, "time": time.time(), "returncode": returncode},
            )  # fmt: skip
            seconds = time.monotonic() - started.pop(idx, time.monotonic())
            log.info(
                "#%d ended (%s) after %.1f s; %s is free",
                idx,
                _pool.describe_exit(returncode),
                seconds,
                self._where(slot),
            )
            result = pool_dir / f"job-{idx}.result.pkl"
            job_return, problem = None, ""
            try:
                data = _pool.verified(key, result.read_bytes(), str(result))
                job_return = pickle.loads(data)
            except FileNotFoundError:
                pass
            except _pool.UnsignedError as err:
                problem = f"; {err}"
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as err:
                problem = f"; its result did not load ({type(err).__name__}: {err})"
            (pool_dir / f"job-{idx}.json").unlink(missing_ok=True)
            result.unlink(missing_ok=True)
            if isinstance(job_return, JobReturn):
                return job_return
            overrides = list(job_overrides[i])
            timed_out = i in pool.timed_out
            return self._lost(
                idx, overrides, slot, returncode, pool_dir, threads, problem, timed_out
            )

        pool = _pool.Pool(
            slots,
            start,
            finish,
            stop_timeout_s=self.stop_timeout_s,
            job_timeout_s=self.job_timeout_s,
        )
        try:
            with _sigterm_raises():
                return pool.run(len(job_overrides))
        finally:
            launch_file.unlink(missing_ok=True)

    def _lost(
        self,
        idx: int,
        overrides: list[str],
        slot: Any,
        returncode: int,
        pool_dir: Path,
        threads: int,
        problem: str = "",
        timed_out: bool = False,
    ) -> JobReturn:
        """A job whose process ended without its result: failed in results.json, NaN to the sweep."""
        assert self.hydra_context is not None and self.config is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = idx
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        output = pool_dir / f"job-{idx}.out"
        ended = _pool.describe_exit(returncode)
        if timed_out:
            error_type = _failed_jobs.TIME_LIMIT
            message = _failed_jobs.time_limit_message(self.job_timeout_s or 0, ended)
            message += f" in {self._where(slot)} (its output: {output})"
        else:
            error_type = _failed_jobs.JOB_LOST
            message = (
                f"the job's process ended by {ended} {self._where(slot, 'on')} without handing "
                f"back its result (its output: {output}){problem}"
            )
        gpu = _gpu_record(slot, threads) if self.pin_gpu else None
        path = _record.record_lost_job(job_dir, overrides, message, gpu, error_type)
        _failed_jobs.log_lost_job(idx, overrides, message, path)
        return _failed_jobs.failed_job_return(sweep_config, overrides, job_dir)
