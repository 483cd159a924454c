"""SLURM: sweeps, DDP, requeue, `train.sbatch` and a job killed by `scancel`, through a real scheduler.

The tests marked `slurm` need a running cluster whose default partition has CPUs only, e.g. the
single-host one of `scripts/slurm/local_cluster.sh start` (CI starts it before the tests); they
skip, saying why, when `sinfo` is missing or cannot reach one. They are also `slow`: each submits
real jobs, and each job pays Python's and Lightning's start-up. The rest (no mark) test the pieces
with stand-ins for sinfo and srun, in well under a second each.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from expkit.sweeps.threads import allocated_cpus
from helpers import PYTHONPATH, ROOT
from hydra_plugins.expkit_submitit_launcher import launcher as slurm_launcher
from hydra_plugins.expkit_submitit_launcher import record as slurm_record
from hydra_plugins.expkit_submitit_launcher import resources as slurm_resources

#: with `-n`, one worker runs every test here: they share one cluster (its CPUs and its queue)
pytestmark = pytest.mark.xdist_group("slurm")

SBATCH = ROOT / "scripts" / "slurm" / "train.sbatch"
START_HINT = "start one with: scripts/slurm/local_cluster.sh start (as root)"
#: every job below: a short digits fit, quiet and light
FAST_JOB = [
    "extras.print_config=false",
    "logger=csv",
    "callbacks.model_summary=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.history.plot=false",
]
#: metrics two runs of the same training must agree on exactly
COMPARED = ("val/acc_best", "test/acc", "test/loss", "train/loss")


# ---- helpers ---------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the checkout under test first (SLURM jobs inherit it: sbatch exports the environment)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PYTHONPATH, env.get("PYTHONPATH")]))
    return env


_started: list[subprocess.Popen] = []


def start_sweep(args: list[str], log_dir: Path) -> subprocess.Popen:
    name = f"hydra.launcher.name=test-{log_dir.name}"  # the cleanup cancels jobs by this name
    command = [sys.executable, "src/train.py", "-m", *args, *FAST_JOB, name]
    command.append(f"paths.log_dir={log_dir}")
    proc = subprocess.Popen(
        command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _started.append(proc)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the sweep did not end within {timeout} s:\n{out[-4000:]}")
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{out[-4000:]}"
    return out


def run_sweep(args: list[str], log_dir: Path, timeout: float = 400) -> str:
    return finish(start_sweep(args, log_dir), timeout)


def sweep_dir(log_dir: Path) -> Path:
    (found,) = (log_dir / "train" / "multiruns").iterdir()
    return found


def results(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def epochs_done(run_dir: Path) -> int:
    """Rows of history.csv (one per finished epoch)."""
    try:
        return max(0, len((run_dir / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def squeue_ids(name_filter: str = "") -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if name_filter in line]


def job_state(job_id: str) -> str:
    info = slurm_resources.slurm_job_info(job_id)
    return info.get("JobState", "")


def same_metrics(a: dict, b: dict) -> None:
    for key in COMPARED:
        assert a["metrics"][key] == b["metrics"][key], (key, a["metrics"], b["metrics"])


@pytest.fixture(autouse=True)
def _cleanup(tmp_path):
    """A failed test leaves no sweep process and none of its SLURM jobs running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if shutil.which("scancel"):
        subprocess.run(["scancel", f"--name=test-{tmp_path.name}"], capture_output=True)


@pytest.fixture(scope="module")
def cluster():
    """A reachable SLURM whose default partition has CPUs only; else skip, saying why."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"SLURM is not installed here (no sinfo/sbatch): {START_HINT}")
    try:
        partition, nodes = slurm_resources.partition_nodes(None)
    except slurm_resources.SlurmLaunchError as err:
        pytest.skip(str(err))  # names what failed and how to start a cluster
    if max(n["cpus"] for n in nodes) < 2:
        pytest.skip(f"partition {partition} has nodes of 1 CPU: these tests need 2")
    return {"partition": partition, "nodes": nodes}


# ---- through the real scheduler --------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.slow
def test_a_sweep_on_slurm_writes_each_job_and_a_summary(cluster, tmp_path):
    out = run_sweep(
        ["hydra/launcher=slurm_cpu", "optimizer.lr=1e-3,1e-2", "trainer.max_epochs=2"], tmp_path
    )
    sweep = sweep_dir(tmp_path)
    for job in ("0", "1"):
        done = results(sweep / job)
        assert done["status"] == "completed"
        assert {"test/acc", "test/loss", "val/acc_best"} <= set(done["metrics"])
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["optimizer.lr"]) == [0.001, 0.01] and set(table["status"]) == {"completed"}
    assert "Sweep summary (2 jobs: 2 completed)" in out
    # the CPU preset asks no GPU, one task; each job's torch threads followed its 1 CPU
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    text = script.read_text()
    assert "--gpus-per-node" not in text and "#SBATCH --ntasks-per-node=1\n" in text
    assert "#SBATCH --cpus-per-task=1\n" in text
    for job in ("0", "1"):
        assert "torch uses 1 thread(s)" in (sweep / job / "train.log").read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_ddp_with_two_srun_tasks_matches_ddp_on_one_machine(cluster, tmp_path):
    """2 CPU tasks started by srun, ranks read from SLURM: same metrics as trainer=ddp_sim here."""
    args = ["trainer=ddp_sim", "trainer.max_epochs=2"]
    run_sweep(["hydra/launcher=slurm_cpu", "hydra.launcher.tasks_per_node=2", *args], tmp_path)
    on_slurm = results(sweep_dir(tmp_path) / "0")
    assert on_slurm["status"] == "completed"
    # Lightning's INFO lines go to the job's log file (the console shows this project's only)
    logs = (sweep_dir(tmp_path) / "0" / "train.log").read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs  # the second rank is srun's second task

    local = tmp_path / "local"
    env = {k: v for k, v in _env().items() if not k.startswith("SLURM_")}
    command = [sys.executable, "src/train.py", *args, *FAST_JOB, f"paths.log_dir={local}"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (local / "train" / "runs").iterdir()
    same_metrics(on_slurm, results(run))


def pause(flag: Path, epoch: str = "2") -> list[str]:
    """Overrides that hold a job after `epoch` until SIGTERM (core/tests/slurm_callbacks.py)."""
    return [
        "+callbacks.pause._target_=slurm_callbacks.PauseAfterEpoch",
        f"+callbacks.pause.epoch={epoch}",
        f"+callbacks.pause.flag={flag}",
    ]


@pytest.mark.slurm
@pytest.mark.slow
def test_a_requeued_job_ends_as_if_it_had_never_stopped(cluster, tmp_path):
    """Two identical jobs but for a pause; `scontrol requeue` job 0 while it waits after epoch 2."""
    flag = tmp_path / "paused"
    args = ["hydra/launcher=slurm_cpu", "trainer.max_epochs=5", "callbacks.early_stopping=null"]
    proc = start_sweep([*args, *pause(flag, epoch="2,-1")], tmp_path)
    wait_until(flag.is_file, 240, "job 0 to pause after epoch 2")
    sweep = sweep_dir(tmp_path)
    (job,) = [j for j in squeue_ids(f"test-{tmp_path.name}") if j.endswith("_0")]
    subprocess.run(["scontrol", "requeue", job], check=True)
    finish(proc)
    requeued, twin = results(sweep / "0"), results(sweep / "1")
    assert requeued["status"] == twin["status"] == "completed"
    assert requeued["resumed_from"], "the requeued job started over instead of resuming"
    assert not twin["resumed_from"]
    same_metrics(requeued, twin)
    assert epochs_done(sweep / "0") == epochs_done(sweep / "1") == 5
    assert slurm_resources.slurm_job_info(job).get("Restarts") == "1"


@pytest.mark.slurm
@pytest.mark.slow
def test_a_job_at_its_time_limit_is_interrupted_then_requeued_and_completes(cluster, tmp_path):
    """`--time=2` with the signal 60 s before it: the job holds after epoch 2 until the signal;
    submitit requeues it. Until the restart its results.json says `interrupted`; the restarted
    attempt continues the same run to the end: 2 attempts, their wall times added up."""
    flag = tmp_path / "paused"
    args = [
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "trainer.max_epochs=4",
        "callbacks.early_stopping=null",
    ]
    proc = start_sweep([*args, *pause(flag, epoch="2")], tmp_path)
    wait_until(flag.is_file, 240, "the job to pause after epoch 2")
    run = sweep_dir(tmp_path) / "0"

    def waiting_for_restart() -> dict | None:
        record = results(run) if (run / "results.json").is_file() else {}
        return record if record.get("status") == "interrupted" else None

    waiting = wait_until(waiting_for_restart, 120, "results.json to say interrupted", poll=0.1)
    assert "SLURM" in waiting["error"]["message"] and waiting["attempts"] == 1
    out = finish(proc)
    done = results(run)
    assert done["status"] == "completed" and done["resumed_from"], done
    assert done["attempts"] >= 2  # a slow restart may meet the time limit once more
    assert done["total_wall_time_s"] > waiting["wall_time_s"] + done["wall_time_s"] - 0.01
    assert epochs_done(run) == 4
    assert not list(run.glob("hpc_ckpt_*.ckpt"))
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()
    assert "failed" not in out.split("Sweep summary")[-1].splitlines()[0]


@pytest.mark.slurm
@pytest.mark.slow
def test_a_ddp_job_at_its_time_limit_is_requeued_and_no_rank_calls_it_failed(cluster, tmp_path):
    """2 srun tasks; the time-limit signal reaches rank 0 (submitit requeues, then leaves) while
    rank 1 waits for it: rank 1's error is no verdict, the job is interrupted, then completes."""
    flag = tmp_path / "paused"
    args = [
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.tasks_per_node=2",
        "trainer=ddp_sim",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "trainer.max_epochs=4",
        "callbacks.early_stopping=null",
    ]
    proc = start_sweep([*args, *pause(flag, epoch="2")], tmp_path)
    wait_until(flag.is_file, 240, "rank 0 to pause after epoch 2")
    run = sweep_dir(tmp_path) / "0"
    interrupted = wait_until(
        lambda: (run / "results.json").is_file() and results(run)["status"] == "interrupted",
        150,
        "results.json to say interrupted",
    )
    assert interrupted
    out = finish(proc)
    done = results(run)
    assert done["status"] == "completed" and done["attempts"] >= 2, done
    assert epochs_done(run) == 4
    logs = "".join(p.read_text() for p in (sweep_dir(tmp_path) / ".submitit").glob("*/*_log.*"))
    assert "failed, the sweep goes on" not in logs + out
    assert "Sweep summary (1 jobs: 1 completed)" in out


@pytest.mark.slurm
@pytest.mark.slow
def test_train_sbatch_requeued_continues_its_own_run(cluster, tmp_path):
    """Two train.sbatch jobs, the same but for a pause; one is requeued while it waits after
    epoch 2 and ends exactly as the other."""
    python = os.environ.get("PYTHON", sys.executable)
    overrides = [
        *FAST_JOB,
        f"paths.log_dir={tmp_path}",
        "trainer.max_epochs=5",
        "callbacks.early_stopping=null",
    ]
    flag = tmp_path / "paused"
    ids = []
    for name, extra in (("requeued", pause(flag)), ("twin", [])):
        out = subprocess.run(
            ["sbatch", "--parsable", f"--job-name=test-{tmp_path.name}"]
            + [f"--output={tmp_path}/{name}-%j.out"]
            + [str(SBATCH), *overrides, *extra],
            cwd=ROOT,
            env={**_env(), "PYTHON": python},
            capture_output=True,
            text=True,
            check=True,
        )
        ids.append(out.stdout.strip().split(";")[0])
    pointer = tmp_path / "slurm" / f"train-{ids[0]}.run"
    wait_until(flag.is_file, 240, "the job to pause after epoch 2")
    run_dir = Path(pointer.read_text().strip())
    subprocess.run(["scontrol", "requeue", ids[0]], check=True)
    wait_until(
        lambda: all(job_state(i) == "COMPLETED" for i in ids), 300, "both jobs to complete", 1
    )
    assert Path(pointer.read_text().strip()) == run_dir
    runs = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 2 and run_dir in runs, runs  # the requeue made no third run
    requeued = results(run_dir)
    (twin,) = [results(r) for r in runs if r != run_dir]
    assert requeued["resumed_from"] and not twin["resumed_from"]
    same_metrics(requeued, twin)
    out = (tmp_path / f"requeued-{ids[0]}.out").read_text()
    assert f"restart 1 of job {ids[0]}: continuing {run_dir}" in out
    assert "trainer=cpu" in (run_dir / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_a_job_killed_by_scancel_is_recorded_and_the_sweep_ends(cluster, tmp_path):
    """3 jobs; the long one is cancelled mid-fit: exit 0, it is `failed` with SLURM's state."""
    proc = start_sweep(
        [
            "hydra/launcher=slurm_cpu",
            "trainer.max_epochs=1,300,2",
            "callbacks.early_stopping=null",
        ],
        tmp_path,
    )
    sweep = wait_until(
        lambda: next((tmp_path / "train" / "multiruns").glob("*"), None), 60, "the sweep dir"
    )
    wait_until(lambda: epochs_done(sweep / "1") >= 1, 180, "job 1's first epoch")
    (job,) = [j for j in squeue_ids(f"test-{tmp_path.name}") if j.endswith("_1")]
    subprocess.run(["scancel", job], check=True)
    out = finish(proc)

    killed = results(sweep / "1")
    assert killed["status"] == "failed"
    assert killed["slurm"]["job_id"] == job and killed["slurm"]["state"].startswith("CANCELLED")
    assert killed["error"]["type"] == "SlurmJobEnded"
    assert f"SLURM ended job {job} as CANCELLED" in killed["error"]["message"]
    assert results(sweep / "0")["status"] == results(sweep / "2")["status"] == "completed"
    table = pd.read_csv(sweep / "summary.csv").set_index("job")
    assert list(table["status"].sort_index()) == ["completed", "failed", "completed"]
    assert "CANCELLED" in table.loc[1, "error"]
    assert "recorded as failed" in out and "Sweep summary (3 jobs: 2 completed, 1 failed)" in out


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("case", ["gpu-preset-on-a-cpu-partition", "sbatch-error"])
def test_a_job_slurm_cannot_run_is_refused_in_one_line(cluster, tmp_path, case):
    if case == "gpu-preset-on-a-cpu-partition":
        args = ["hydra/launcher=slurm"]
        message = r"^hydra.launcher.gpus_per_node=1 but the nodes of partition '\w+' have no GPUs"
    else:  # every node excluded: sbatch's own refusal
        nodes = ",".join(n["name"] for n in cluster["nodes"])
        args = ["hydra/launcher=slurm_cpu", f"hydra.launcher.exclude='{nodes}'"]
        message = (
            r"^sbatch refused the sweep: sbatch: error: .*node configuration is not available\.?$"
        )
    command = [sys.executable, "src/train.py", "-m", *args, f"paths.log_dir={tmp_path}"]
    before = set(squeue_ids())
    proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert re.search(message, errors[0]), proc.stderr
    assert errors[1:] == [], proc.stderr  # the one line alone (core/expkit/run/cli.py)
    assert set(squeue_ids()) <= before  # nothing was left queued


@pytest.mark.slurm
def test_resources_no_node_has_are_refused_before_submit(cluster):
    partition, cpus = cluster["partition"], max(n["cpus"] for n in cluster["nodes"])
    refuse = slurm_resources.check_resources
    with pytest.raises(
        slurm_resources.SlurmLaunchError, match=rf"cpus_per_task={cpus + 1} .* at most {cpus} CPUs"
    ):
        refuse({"cpus_per_task": cpus + 1, "tasks_per_node": 1})
    with pytest.raises(
        slurm_resources.SlurmLaunchError, match=r"mem_gb=100000 is more than .* at most"
    ):
        refuse({"mem_gb": 100000, "tasks_per_node": 1})
    with pytest.raises(
        slurm_resources.SlurmLaunchError, match=rf"'nope' does not exist.*Allowed: .*{partition}"
    ):
        refuse({"partition": "nope", "tasks_per_node": 1})
    with pytest.raises(slurm_resources.SlurmLaunchError, match=r"nodes=9 is more than"):
        refuse({"nodes": 9, "tasks_per_node": 1})
    refuse({"partition": partition, "cpus_per_task": 1, "tasks_per_node": cpus, "mem_gb": 1})


# ---- the pieces, with stand-ins ----------------------------------------------------------------
@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """A bin dir first on PATH; write(name, body) puts a shell script there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def write(name: str, body: str) -> Path:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    return write


def test_resources_are_checked_against_what_sinfo_lists(stand_ins):
    rows = [
        "cpu*|c1|32|128000|(null)",
        "gpu|g1|64|512000|gpu:a100:4(S:0-1)",
        "gpu|g2|64|512000|gpu:4",
    ]
    stand_ins("sinfo", "printf '" + "\\n".join(rows) + "\\n'")
    check = slurm_resources.check_resources
    check(
        {
            "partition": "gpu",
            "nodes": 2,
            "gpus_per_node": 4,
            "tasks_per_node": 4,
            "cpus_per_task": 16,
        }
    )
    check({"cpus_per_task": 32, "tasks_per_node": 1, "mem_gb": 100})  # the default partition, cpu
    refused = {
        "gpus_per_node=8 but the nodes of partition 'gpu' have at most 4 GPUs": {
            "partition": "gpu",
            "gpus_per_node": 8,
            "tasks_per_node": 8,
        },
        "gpus_per_node=1 but the nodes of partition 'cpu' have no GPUs (GRES gpu)": {
            "gpus_per_node": 1,
            "tasks_per_node": 1,
        },
        "tasks_per_node=0 is not allowed": {"gpus_per_node": 0, "tasks_per_node": 0},
        "cpus_per_task=8 x tasks_per_node=8 = 64 CPUs per node": {
            "partition": "cpu",
            "cpus_per_task": 8,
            "tasks_per_node": 8,
        },
        "mem_gb=200 is more than any node of partition 'cpu' has: at most 125.0 GB": {
            "mem_gb": 200,
            "tasks_per_node": 1,
        },
        "nodes=3 is more than partition 'gpu' has: 2 node(s)": {
            "partition": "gpu",
            "nodes": 3,
            "tasks_per_node": 1,
        },
        "cpus_per_task='8' is not allowed: an integer >= 1": {"cpus_per_task": "8"},
    }
    for message, params in refused.items():
        with pytest.raises(slurm_resources.SlurmLaunchError, match=re.escape(message)):
            check(params)


def test_unreachable_slurm_is_one_line_naming_the_fix(stand_ins):
    stand_ins(
        "sinfo",
        "echo 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2; exit 1",
    )
    with pytest.raises(slurm_resources.SlurmLaunchError) as err:
        slurm_resources.check_resources({"tasks_per_node": 1})
    assert str(err.value).count("\n") == 0
    assert "Unable to contact slurm controller" in str(err.value)
    assert "local_cluster.sh start" in str(err.value)


def test_a_job_slurm_ended_is_marked_failed_keeping_what_it_wrote(tmp_path):
    slurm = {"job_id": "7_1", "state": "CANCELLED by 0", "reason": "None", "exit_code": "0:15"}
    never_started = tmp_path / "1"
    slurm_record.record_slurm_failure(never_started, ["optimizer.lr=0.01"], slurm)
    done = results(never_started)
    assert done["status"] == "failed" and done["slurm"] == slurm
    assert done["error"]["message"] == (
        "SLURM ended job 7_1 as CANCELLED by 0, exit code 0:15, before the run wrote its results"
    )
    assert "optimizer.lr=0.01" in (never_started / ".hydra" / "overrides.yaml").read_text()

    interrupted = tmp_path / "2"
    interrupted.mkdir()
    (interrupted / "results.json").write_text(
        json.dumps({"status": "interrupted", "metrics": {"val/acc": 0.5}, "error": {"type": "X"}})
    )
    slurm_record.record_slurm_failure(interrupted, [], {**slurm, "reason": "TimeLimit"})
    done = results(interrupted)
    assert done["status"] == "failed" and done["metrics"] == {"val/acc": 0.5}
    assert "(reason: TimeLimit)" in done["error"]["message"]
    assert done["error"]["message"].endswith("after the run was interrupted")
    assert done["error"]["before"] == {"type": "X"}
    assert not list(interrupted.glob(".*tmp"))


def test_gres_strings_count_gpus():
    gpus = slurm_resources._gpus
    assert [gpus("(null)"), gpus("gpu:4"), gpus("gpu:a100:4(S:0-1)"), gpus("gpu:2,shard:8")] == [
        0,
        4,
        4,
        2,
    ]
    assert gpus("gpu:a100:2(S:0),gpu:v100:1(S:1)") == 3


def test_threads_follow_the_task_share_of_the_allocation():
    assert allocated_cpus({}) is None
    assert allocated_cpus({"SLURM_JOB_ID": "1", "SLURM_CPUS_PER_TASK": "4"}) == 4
    job = {"SLURM_JOB_ID": "1", "SLURM_CPUS_ON_NODE": "8", "SLURM_TASKS_PER_NODE": "2(x3)"}
    assert allocated_cpus(job) == 4
    assert allocated_cpus({**job, "SLURM_NTASKS_PER_NODE": "8"}) == 1


def run_sbatch_script(tmp_path: Path, env: dict[str, str], *args: str) -> list[str]:
    """train.sbatch outside SLURM, with SLURM's variables and an srun that records its arguments."""
    calls = tmp_path / "srun_calls"
    (tmp_path / "bin" / "srun").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (tmp_path / "bin" / "srun").chmod(0o755)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "TRAINER"},
        "SLURM_SUBMIT_DIR": str(ROOT),
        "PYTHON": sys.executable,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    proc = subprocess.run(
        ["bash", str(SBATCH), f"paths.log_dir={tmp_path}", *args],
        env=full_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines()[-1].split()


def test_train_sbatch_finds_its_own_run_and_never_another(tmp_path, stand_ins):
    def run_dir(call: list[str]) -> str:
        return next(a for a in call if a.startswith("hydra.run.dir=")).split("=", 1)[1]

    script = SBATCH.read_text()  # requeues itself: on SIGUSR1 Lightning runs `scontrol requeue`
    assert "#SBATCH --requeue\n" in script and "#SBATCH --signal=SIGUSR1@90\n" in script
    first = run_sbatch_script(tmp_path, {"SLURM_JOB_ID": "41"})
    assert first[0] == sys.executable and first[1] == "src/train.py"  # the venv's python
    assert "trainer=cpu" in first and "slurm-41_" in run_dir(first)
    requeued = run_sbatch_script(tmp_path, {"SLURM_JOB_ID": "41", "SLURM_RESTART_COUNT": "1"})
    assert run_dir(requeued) == run_dir(first)
    reused_id = run_sbatch_script(tmp_path, {"SLURM_JOB_ID": "41"})  # a new job, same id
    assert run_dir(reused_id) != run_dir(first)
    again = run_sbatch_script(tmp_path, {"SLURM_JOB_ID": "41", "SLURM_RESTART_COUNT": "2"})
    assert run_dir(again) == run_dir(reused_id)


@pytest.mark.parametrize(
    "env, args, expected",
    [
        ({"SLURM_GPUS_ON_NODE": "1"}, [], ["trainer=gpu"]),
        (
            {"SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_NUM_NODES": "2"},
            [],
            ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
        ),
        (
            {"SLURM_NTASKS_PER_NODE": "2"},
            [],
            ["trainer=ddp_sim", "trainer.devices=2", "trainer.num_nodes=1"],
        ),
        ({"SLURM_GPUS_ON_NODE": "1"}, ["trainer=cpu"], ["trainer=cpu"]),
        ({"SLURM_GPUS_ON_NODE": "1", "TRAINER": "mps"}, [], ["trainer=mps"]),
    ],
)
def test_train_sbatch_takes_its_trainer_from_the_allocation(
    tmp_path, stand_ins, env, args, expected
):
    call = run_sbatch_script(tmp_path, {"SLURM_JOB_ID": "5", **env}, *args)
    trainer = [a for a in call if a.startswith("trainer")]
    assert trainer[: len(expected)] == expected and len(trainer) == len(expected), call


def test_train_sbatch_refuses_a_missing_python(tmp_path):
    env = {
        **os.environ,
        "SLURM_JOB_ID": "3",
        "SLURM_SUBMIT_DIR": str(ROOT),
        "PYTHON": "/nope/python",
    }
    proc = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "train.sbatch: error: no python at /nope/python: run 'make install' first, or set "
        "PYTHON=/path/to/venv/bin/python"
    )


@pytest.mark.parametrize(
    "preset, tasks, gpus, cpus", [("slurm", 1, 1, 8), ("slurm_cpu", 1, None, 1)]
)
def test_slurm_presets_build_the_tolerant_launcher(preset, tasks, gpus, cpus):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from helpers import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert isinstance(launcher, slurm_launcher.TolerantSlurmLauncher)
    params = launcher.params
    assert (params["tasks_per_node"], params["gpus_per_node"], params["cpus_per_task"]) == (
        tasks,
        gpus,
        cpus,
    )
