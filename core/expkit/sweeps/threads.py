"""Threads follow the CPUs a job was given, not the CPUs the machine has.

A SLURM task sees every core of its node (with `TaskPlugin=task/none` nothing even pins it), and
torch starts one intra-op thread per core: two 1-CPU jobs on one node then run ~5x slower per
epoch than with one thread each. `follow_cpu_allocation()` sets torch's thread count to the
task's share (`SLURM_CPUS_PER_TASK`, else the node's CPUs over its tasks), and tells joblib
(`LOKY_MAX_CPU_COUNT`) the same, so `hydra/launcher=joblib` inside an allocation splits those
CPUs among its workers rather than the node's. Outside SLURM it changes nothing: there the joblib
launcher already caps each worker at cores / jobs. A job of `hydra/launcher=gpu_pool` takes the
share its launcher computed (`GPU_POOL_THREADS`: the cores over the jobs running at once), inside
SLURM or not.
"""

import os
import re

from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

#: the GPU pool's share of the cores for its job (expkit.run.gpu_slot.ENV_THREADS: a test keeps
#: them equal; the pool's module is not imported outside its jobs)
POOL_THREADS = "GPU_POOL_THREADS"


def _first_int(text: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else None


def allocated_cpus(env: os._Environ | dict[str, str] = os.environ) -> int | None:
    """CPUs this SLURM task may use, or None outside a SLURM job.

    `SLURM_CPUS_PER_TASK` is set when the job asked `--cpus-per-task`; otherwise the task's share
    is the node's allocated CPUs (`SLURM_CPUS_ON_NODE`) over its tasks on the node
    (`SLURM_NTASKS_PER_NODE`, else the first count of `SLURM_TASKS_PER_NODE`, e.g. `2(x3)`).
    """
    if "SLURM_JOB_ID" not in env:
        return None
    per_task = _first_int(env.get("SLURM_CPUS_PER_TASK"))
    if per_task:
        return per_task
    on_node = _first_int(env.get("SLURM_CPUS_ON_NODE"))
    if not on_node:
        return None
    tasks = _first_int(env.get("SLURM_NTASKS_PER_NODE")) or _first_int(
        env.get("SLURM_TASKS_PER_NODE")
    )
    return max(1, on_node // max(1, tasks or 1))


def follow_cpu_allocation() -> int | None:
    """Inside a SLURM job: torch threads = the task's CPUs (and joblib's core count); return it.

    In a GPU pool's job: the pool's share of the cores instead."""
    pool_share = _first_int(os.environ.get(POOL_THREADS))
    cpus = pool_share or allocated_cpus()
    if cpus is None:
        return None
    import torch

    if torch.get_num_threads() != cpus:
        given = "The GPU pool gave this job" if pool_share else "SLURM gave this task"
        log.info("%s %d CPU(s): torch uses %d thread(s).", given, cpus, cpus)
        torch.set_num_threads(cpus)
    os.environ.setdefault("LOKY_MAX_CPU_COUNT", str(cpus))
    return cpus
