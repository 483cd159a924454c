"""What SLURM says about its partitions and jobs, and the check of a request against them before submit."""

from __future__ import annotations

import logging
import re
import subprocess
from typing import Any

from hydra.errors import CompactHydraException

log = logging.getLogger(__name__)


# ---- asking SLURM ----------------------------------------------------------------------------
class SlurmLaunchError(CompactHydraException):
    """A sweep that cannot be submitted as asked: printed as one line, no traceback."""


def _run(command: list[str], timeout: float = 30) -> str:
    return subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def _one_line(text: object) -> str:
    """The line of a tool's output that says what went wrong (sbatch's `error:` line if any)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no message)"])[-1]


def slurm_job_info(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Reason, ExitCode, ...); {} once SLURM forgot it."""
    try:
        out = _run(["scontrol", "show", "job", "-o", job_id], timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))


def sacct_info(job_id: str) -> dict[str, str]:
    """State (e.g. `CANCELLED by 0`), ExitCode and Reason from accounting; {} without it."""
    try:
        out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Reason"])
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    return dict(zip(("State", "ExitCode", "Reason"), rows[-1], strict=True)) if rows else {}


def partition_nodes(partition: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The partition (the default one when None) and its nodes: cpus, memory_mb, gpus each."""
    try:
        out = _run(["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G"])
    except FileNotFoundError as err:
        raise SlurmLaunchError(
            "hydra/launcher=slurm needs SLURM, but `sinfo` is not installed here. Allowed: run on a "
            "SLURM login node, or start a local cluster (scripts/slurm/local_cluster.sh start)."
        ) from err
    except (OSError, subprocess.SubprocessError) as err:
        message = _one_line(getattr(err, "stderr", None) or err)
        raise SlurmLaunchError(
            f"hydra/launcher=slurm cannot reach SLURM (sinfo: {message}). Allowed: a running "
            "cluster (scripts/slurm/local_cluster.sh start for a local one)."
        ) from err
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
    names = list(dict.fromkeys(row[0] for row in rows))
    if partition is None:
        defaults = [name for name in names if name.endswith("*")]
        if not defaults:
            raise SlurmLaunchError(
                f"hydra.launcher.partition=null but this cluster has no default partition. "
                f"Allowed: {', '.join(names) or '(none listed by sinfo)'}."
            )
        partition = defaults[0]
    nodes = [
        {"name": row[1], "cpus": int(row[2]), "memory_mb": int(row[3]), "gpus": _gpus(row[4])}
        for row in rows
        if row[0].rstrip("*") == partition.rstrip("*")
    ]
    if not nodes:
        allowed = ", ".join(name.rstrip("*") for name in names) or "(none listed by sinfo)"
        raise SlurmLaunchError(
            f"hydra.launcher.partition={partition!r} does not exist on this cluster. Allowed: {allowed}."
        )
    return partition.rstrip("*"), nodes


def _gpus(gres: str) -> int:
    """GPUs in a node's GRES: `gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:2,shard:8` -> 4, 4, 2."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _as_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SlurmLaunchError(
            f"hydra.launcher.{name}={value!r} is not allowed: an integer >= {minimum} (or null)."
        )
    return value


def check_resources(params: dict[str, Any]) -> None:
    """Refuse, before submitting, a job that no node of its partition could ever run."""
    nodes_asked = _as_int("nodes", params.get("nodes", 1), 1) or 1
    tasks = params.get("tasks_per_node", 1)
    if tasks == 0:
        raise SlurmLaunchError(
            "hydra.launcher.tasks_per_node=0 is not allowed (it follows gpus_per_node=0 in "
            "hydra/launcher=slurm, and sbatch would get --ntasks-per-node=0). Allowed: >= 1; for "
            "CPU jobs use hydra/launcher=slurm_cpu, or set hydra.launcher.tasks_per_node=1."
        )
    tasks = _as_int("tasks_per_node", tasks, 1) or 1
    cpus = _as_int("cpus_per_task", params.get("cpus_per_task"), 1)
    gpus = _as_int("gpus_per_node", params.get("gpus_per_node"), 0)
    mem_gb = params.get("mem_gb")
    if mem_gb is not None and (isinstance(mem_gb, bool) or not isinstance(mem_gb, int | float)):
        raise SlurmLaunchError(f"hydra.launcher.mem_gb={mem_gb!r} is not allowed: a number of GB.")

    partition, nodes = partition_nodes(params.get("partition"))
    where = f"partition {partition!r}"
    if nodes_asked > len(nodes):
        raise SlurmLaunchError(
            f"hydra.launcher.nodes={nodes_asked} is more than {where} has: {len(nodes)} node(s)."
        )
    most_gpus = max(n["gpus"] for n in nodes)
    if gpus and gpus > most_gpus:
        offer = f"at most {most_gpus} GPUs per node" if most_gpus else "no GPUs (GRES gpu)"
        raise SlurmLaunchError(
            f"hydra.launcher.gpus_per_node={gpus} but the nodes of {where} have {offer}. Allowed: "
            f"another partition (hydra.launcher.partition=...), or hydra/launcher=slurm_cpu."
        )
    most_cpus = max(n["cpus"] for n in nodes)
    if cpus is not None and cpus * tasks > most_cpus:
        raise SlurmLaunchError(
            f"hydra.launcher.cpus_per_task={cpus} x tasks_per_node={tasks} = {cpus * tasks} CPUs "
            f"per node, but the nodes of {where} have at most {most_cpus} CPUs."
        )
    if cpus is None and tasks > most_cpus:
        raise SlurmLaunchError(
            f"hydra.launcher.tasks_per_node={tasks} needs {tasks} CPUs per node, but the nodes of "
            f"{where} have at most {most_cpus} CPUs."
        )
    most_mb = max(n["memory_mb"] for n in nodes)
    if mem_gb is not None and mem_gb * 1024 > most_mb:
        raise SlurmLaunchError(
            f"hydra.launcher.mem_gb={mem_gb} is more than any node of {where} has: at most "
            f"{most_mb / 1024:.1f} GB."
        )
