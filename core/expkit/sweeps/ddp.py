"""DDP inside a multirun: every rank of a job works in that job's directory, and nothing else.

Lightning starts ranks > 0 by running the entry script again (`_hydra_subprocess_cmd` in the
subprocess launchers of pytorch_lightning and lightning_fabric) with the process's whole command line plus
`hydra.run.dir=<HydraConfig run.dir>`. In a multirun that command still holds `-m` and the sweep
lists, so every rank re-launches the whole sweep and writes stray folders; and `run.dir` names a
fresh `runs/` folder rather than the job's. In a joblib or submitit worker, the command line is not
even the user's.

`ranks_join_this_job` fixes that for the duration of one job, without changing how Lightning runs
DDP: the ranks' command becomes the entry script with this job's own overrides (as Hydra recorded
them), `hydra.run.dir=<this job's directory>` and `hydra.mode=RUN`. When the job ends it waits for
the ranks it started (stopping them if the job failed), detaches them from Lightning's watchdog
(which otherwise kills the whole sweep when a rank of a finished, failed job exits non-zero),
destroys the process group and removes the DDP variables Lightning put in the environment, so the
next job of the sweep starts a group of its own.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.strategies.launchers import subprocess_script as fabric_launcher
from pytorch_lightning.strategies.launchers import subprocess_script as trainer_launcher

from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

#: the modules whose `_hydra_subprocess_cmd` / `_launch_process_observer` Lightning calls
LAUNCHER_MODULES = (trainer_launcher, fabric_launcher)
#: what Lightning's subprocess launcher writes into the parent's environment
DDP_ENV_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
#: how long a finished job waits for its other ranks to exit before stopping them
RANK_EXIT_TIMEOUT_S = 60.0


def job_command(script: str | Path, local_rank: int) -> tuple[list[str], str]:
    """The command that starts rank `local_rank` of the current job, and the directory to run it in."""
    hydra_cfg = HydraConfig.get()
    cwd = hydra_cfg.runtime.cwd
    script = Path(script)
    if not script.is_absolute():
        script = Path(cwd) / script
    hydra_overrides = [o for o in hydra_cfg.overrides.hydra if not o.startswith("hydra.mode=")]
    command = [
        sys.executable,
        str(script),
        *hydra_overrides,
        *hydra_cfg.overrides.task,
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name={hydra_cfg.job.name}_ddp_rank_{local_rank}",
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/
        "hydra.mode=RUN",
    ]
    return command, cwd


def _stop(ranks: list[subprocess.Popen], failed: bool) -> None:
    """Wait for the job's other ranks (stop them at once if the job failed); then detach them."""
    for proc in ranks:
        if failed and proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=RANK_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning(
                "DDP rank (pid %d) still running after the job ended: stopping it.", proc.pid
            )
            proc.kill()
            proc.wait()
    # the list is the one Lightning's watchdog thread polls: empty, it sees nothing left to watch
    ranks.clear()


@contextmanager
def ranks_join_this_job(script: str | Path) -> Iterator[None]:
    """Within this block, DDP ranks Lightning starts belong to the current Hydra job."""
    names = ("_hydra_subprocess_cmd", "_launch_process_observer")
    modules = [m for m in LAUNCHER_MODULES if all(hasattr(m, name) for name in names)]
    if len(modules) < len(LAUNCHER_MODULES):  # pragma: no cover
        log.warning(
            "Lightning's subprocess launcher changed: DDP ranks inside this multirun may not find "
            "their job's directory (see expkit/sweeps/ddp.py)."
        )
    originals = [(m, {name: getattr(m, name) for name in names}) for m in modules]
    env_before = {key: os.environ.get(key) for key in DDP_ENV_VARS}
    started: list[list[subprocess.Popen]] = []

    def command(local_rank: int) -> tuple[list[str], str]:
        return job_command(script, local_rank)

    launch_observer = fabric_launcher._launch_process_observer

    def observe(child_processes: list[subprocess.Popen]) -> None:
        started.append(child_processes)  # the list Lightning's watchdog thread will poll
        launch_observer(child_processes)

    for module in modules:
        setattr(module, "_hydra_subprocess_cmd", command)  # noqa: B010 (private, checked above)
        setattr(module, "_launch_process_observer", observe)  # noqa: B010
    failed = True
    try:
        yield
        failed = False
    finally:
        for module, attrs in originals:
            for name, value in attrs.items():
                setattr(module, name, value)
        for ranks in started:
            _stop(ranks, failed)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
