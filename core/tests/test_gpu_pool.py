"""`hydra/launcher=gpu_pool`: sweep jobs in parallel on one workstation, one GPU slot each.

Everything here runs without a GPU: the pool is given fake GPUs (`hydra.launcher.gpus=[0,1]`)
and the jobs train with `trainer=cpu`, yet each still gets its own slot, records it, and no slot
ever holds two jobs at once (checked against the pool's own log, `.gpus/assignments.jsonl`). The
pieces (which GPUs, the slots, the scheduling, the slot lock) are tested in-process with
stand-in processes, in about a second each; the sweeps through the command line are `slow`.
The same sweep on real GPUs is in core/tests/test_gpu.py.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from expkit.run import gpu_slot
from expkit.sweeps import summary as sweep_summary
from expkit.sweeps import threads
from helpers import ROOT, results, run_cli
from hydra_plugins.expkit_gpu_pool_launcher import _pool, _worker
from test_sweeps import NO_CURVES, SWEEP_FAST, job_dirs, only_sweep_dir, run_sweep

#: with `-n`, one worker runs every test here: slots, locks and kill timings on one machine
pytestmark = pytest.mark.xdist_group("gpu_pool")

#: the key of results.json that holds the job's GPU
GPU_POOL_GPU = "gpu"


# ---- the GPUs and their slots ----------------------------------------------------------------
def test_the_pool_takes_the_gpus_this_process_sees():
    assert _pool.visible_gpus({}, lambda: 4) == ["0", "1", "2", "3"]
    # CUDA_VISIBLE_DEVICES set: a job must get the GPU the user meant, not torch's renumbering
    assert _pool.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, lambda: 2) == ["2", "3"]
    assert _pool.visible_gpus({"CUDA_VISIBLE_DEVICES": "0"}, lambda: 0) == []
    assert _pool.pool_gpus(env={}, device_count=lambda: 2) == ["0", "1"]
    assert _pool.pool_gpus(
        num_gpus=1, env={"CUDA_VISIBLE_DEVICES": "5,7"}, device_count=lambda: 2
    ) == ["5"]


def test_gpus_can_be_named_or_faked_on_a_machine_without_any():
    no_gpu = {"env": {}, "device_count": lambda: 0}
    assert _pool.pool_gpus(gpus=[0, 1, 2, 3], **no_gpu) == ["0", "1", "2", "3"]
    assert _pool.pool_gpus(num_gpus=4, **no_gpu) == ["0", "1", "2", "3"]
    assert _pool.pool_gpus(gpus=["GPU-8f2a"], **no_gpu) == ["GPU-8f2a"]
    assert _pool.pool_gpus(gpus="MIG-GPU-8f2a/1/0", **no_gpu) == ["MIG-GPU-8f2a/1/0"]


@pytest.mark.parametrize(
    ("kwargs", "count", "message"),
    [
        (
            {},
            0,
            r"found no GPU on this machine: .* hydra.launcher.gpus=\[0,1\] or hydra.launcher.num_gpus=2",
        ),
        (
            {"num_gpus": 4},
            2,
            r"num_gpus=4 but this process sees 2 GPU\(s\) \(0, 1\)\. Allowed: at most 2",
        ),
        ({"num_gpus": 0}, 0, r"num_gpus=0 is not allowed: a whole number >= 1"),
        ({"gpus": []}, 0, r"gpus=\[\] is not allowed: give a non-empty list"),
        ({"gpus": [0, 0]}, 0, r"names a GPU twice.*jobs_per_gpu=2"),
        ({"gpus": ["0;rm"]}, 0, r"is not allowed"),
        ({"gpus": ["0,1"]}, 0, r"is not allowed"),
        ({"gpus": [0], "num_gpus": 1}, 0, r"are both set"),
    ],
    ids=["no-gpu", "more-than-seen", "zero", "empty", "twice", "not-an-id", "two-in-one", "both"],
)
def test_a_pool_it_cannot_build_is_one_clear_error(kwargs, count, message):
    with pytest.raises(_pool.GpuPoolError, match=message) as err:
        _pool.pool_gpus(**kwargs, env={}, device_count=lambda: count)
    assert "\n" not in str(err.value)


def test_slots_take_turns_between_gpus():
    slots = _pool.make_slots(["0", "1"], jobs_per_gpu=2)
    assert [s.name for s in slots] == ["0.0", "1.0", "0.1", "1.1"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(_pool.GpuPoolError, match="jobs_per_gpu="):
            _pool.make_slots(["0"], bad)


def test_threads_are_the_cores_shared_by_the_jobs_running_at_once():
    assert _pool.threads_per_job(None, concurrent=4, cores=16) == 4
    assert _pool.threads_per_job(None, concurrent=8, cores=2) == 1
    assert _pool.threads_per_job(3, concurrent=8, cores=2) == 3
    with pytest.raises(_pool.GpuPoolError, match="cpus_per_job=0"):
        _pool.threads_per_job(0, concurrent=1)
    slurm = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "1"}
    assert _pool.available_cores(slurm) == 1


def test_a_job_starts_with_its_gpu_set_and_its_threads_capped(tmp_path):
    slot = _pool.Slot("3", 1)
    env = _pool.job_env({"MKL_NUM_THREADS": "7"}, slot, tmp_path / "3.1.lock", 4, ["/x", ""])
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert (env[_pool.ENV_GPU], env[_pool.ENV_SLOT], env[_pool.ENV_THREADS]) == ("3", "1", "4")
    assert env["OMP_NUM_THREADS"] == "4" and env["MKL_NUM_THREADS"] == "7"  # the user's stands
    assert env["PYTHONPATH"].split(os.pathsep)[0] == "/x"
    # the job side reads the same names (the plugin cannot import src)
    assert threads.POOL_THREADS == gpu_slot.ENV_THREADS and gpu_slot.ENV_GPU == "GPU_POOL_GPU"
    assert (gpu_slot.ENV_GPU, gpu_slot.ENV_SLOT, gpu_slot.ENV_THREADS) == (
        _pool.ENV_GPU,
        _pool.ENV_SLOT,
        _pool.ENV_THREADS,
    )
    assert gpu_slot.pool_gpu(env) == {"index": 3, "slot": 1, "name": None, "threads": 4}
    assert gpu_slot.pool_gpu({}) is None


# ---- scheduling, with stand-in processes ---------------------------------------------------
def _intervals(log: list[tuple]) -> dict[int, tuple]:
    """job -> (slot, start, end) from ("start"/"end", job, slot, time) events."""
    spans: dict[int, list] = {}
    for event, job, slot, when in log:
        spans.setdefault(job, [slot, None, None])[1 if event == "start" else 2] = when
    return {job: tuple(span) for job, span in spans.items()}


def assert_never_shared(spans: dict, jobs_per_gpu: int, gpus: int) -> None:
    """No slot ran two jobs at once; no GPU ran more than jobs_per_gpu; nothing beyond the slots."""
    items = list(spans.values())
    for i, (slot_a, start_a, end_a) in enumerate(items):
        for slot_b, start_b, end_b in items[i + 1 :]:
            if slot_a == slot_b:
                assert end_a <= start_b or end_b <= start_a, (slot_a, items)
    for t in sorted(start for _, start, _ in items):
        running = [slot for slot, start, end in items if start <= t < end]
        per_gpu = {}
        for slot in running:
            per_gpu[slot.gpu] = per_gpu.get(slot.gpu, 0) + 1
        assert max(per_gpu.values()) <= jobs_per_gpu, (t, running)
        assert len(running) <= jobs_per_gpu * gpus


@pytest.mark.parametrize("jobs_per_gpu", [1, 2])
def test_the_next_job_starts_when_a_slot_frees_never_two_in_one_slot(jobs_per_gpu):
    durations = [0.4, 0.1, 0.3, 0.1, 0.2, 0.1, 0.3]
    log: list[tuple] = []

    def start(job, slot):
        log.append(("start", job, slot, time.monotonic()))
        return subprocess.Popen(["sleep", str(durations[job])])

    def finish(job, slot, proc):
        log.append(("end", job, slot, time.monotonic()))
        return (job, slot.name, proc.returncode)

    slots = _pool.make_slots(["0", "1"], jobs_per_gpu)
    out = _pool.Pool(slots, start, finish, poll_s=0.02).run(len(durations))
    assert [job for job, _, _ in out] == list(range(len(durations)))  # in job order
    assert {rc for _, _, rc in out} == {0}
    spans = _intervals(log)
    assert_never_shared(spans, jobs_per_gpu, gpus=2)
    assert {slot for slot, _, _ in spans.values()} == set(slots)  # every slot was used
    # the first jobs spread over the GPUs before doubling up on one
    first = [slot.gpu for _, job, slot, _ in log[: len(slots)] if job < 2]
    assert sorted(first) == ["0", "1"]


def test_a_killed_job_frees_its_slot_for_the_next():
    log: list[tuple] = []

    def start(job, slot):
        log.append(("start", job, slot, time.monotonic()))
        if job == 0:  # dies by SIGKILL, as `kill -9` or the OOM killer would do it
            return subprocess.Popen(["sh", "-c", "kill -9 $$"])
        return subprocess.Popen(["sleep", "0.1"])

    def finish(job, slot, proc):
        log.append(("end", job, slot, time.monotonic()))
        return proc.returncode

    out = _pool.Pool(_pool.make_slots(["0"], 1), start, finish, poll_s=0.02).run(3)
    assert out == [-signal.SIGKILL, 0, 0]
    assert _pool.describe_exit(out[0]) == "SIGKILL"
    assert_never_shared(_intervals(log), jobs_per_gpu=1, gpus=1)


def test_an_interrupted_pool_stops_its_running_jobs():
    procs = []

    def start(job, slot):
        procs.append(subprocess.Popen(["sleep", "30"]))
        return procs[-1]

    def finish(job, slot, proc):
        return proc.returncode

    pool = _pool.Pool(_pool.make_slots(["0", "1"], 1), start, finish, poll_s=0.02)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    # Python's own Ctrl+C handler (a shell that starts pytest in the background ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.run(4)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(procs) == 2  # the other two never started
    assert [p.poll() for p in procs] == [-signal.SIGTERM, -signal.SIGTERM]


# ---- the slot lock, held by the job's own process --------------------------------------------
HOLD = (
    "import sys, time; from pathlib import Path; "
    "from hydra_plugins.expkit_gpu_pool_launcher._worker import claim_slot; "
    "claim_slot(Path(sys.argv[1]), 0); print('held', flush=True); time.sleep(60)"
)


def test_the_slot_lock_dies_with_a_job_killed_by_sigkill(tmp_path):
    lock = tmp_path / ".gpus" / "0.0.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert json.loads(lock.read_text())["pid"] == holder.pid  # who holds it, for the message
        claimed = []
        waiter = threading.Thread(target=lambda: claimed.append(_worker.claim_slot(lock, 1)))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not claimed  # the next job waits while the holder lives
        holder.kill()  # kill -9
        waiter.join(10)
        assert claimed, "the slot of a job killed with SIGKILL was not freed"
        assert json.loads(lock.read_text())["job"] == 1
        os.close(claimed[0])
    finally:
        holder.kill()
        holder.wait()


ORPHAN = (
    "import subprocess, sys, time\n"
    "code = ('import os, time; from hydra_plugins.expkit_gpu_pool_launcher._worker import "
    "die_with_the_sweep; die_with_the_sweep(os.getppid()); print(os.getpid(), flush=True); "
    "time.sleep(60)')\n"
    "job = subprocess.Popen([sys.executable, '-c', code], stdout=sys.stdout)\n"
    "time.sleep(60)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_stops_when_its_sweep_is_killed(tmp_path):
    """kill -9 of the sweep's process: its jobs get SIGTERM (no orphan keeps a GPU)."""
    sweep = subprocess.Popen(
        [sys.executable, "-c", ORPHAN], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    job = int(sweep.stdout.readline())
    sweep.kill()
    sweep.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(job):
        time.sleep(0.05)
    assert not _alive(job), "the job outlived its sweep"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped by init) is gone
        return f.read().split(")")[-1].split()[0] != "Z"


class _Opens:
    """A pickle that would create `marker` if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_the_pool_unpickles_only_what_this_launch_signed(tmp_path):
    """The launch state and each job's result pass through the sweep directory: a file put there
    by anyone else (no key: it is in the environment only) is refused, never unpickled."""
    import pickle

    key, marker = os.urandom(32), tmp_path / "ran"
    blob = _pool.sign(key, pickle.dumps({"ok": 1}))
    assert pickle.loads(_pool.verified(key, blob, "job-0.result.pkl")) == {"ok": 1}
    crafted = pickle.dumps(_Opens(marker))
    for forged in (crafted, b"0" * 64 + b"\n" + crafted, _pool.sign(os.urandom(32), crafted)):
        with pytest.raises(_pool.UnsignedError, match="not written by this sweep's GPU pool"):
            _pool.verified(key, forged, "job-0.result.pkl")
    with pytest.raises(_pool.UnsignedError):
        _pool.verified(b"", _pool.sign(b"", crafted), "x")  # no key: nothing verifies
    assert not marker.exists()


# ---- the summary -----------------------------------------------------------------------------
def test_the_sweep_summary_lists_the_gpu_of_each_job(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (gpu, score) in enumerate([(0, 0.9), (1, 0.95), (0, 0.8)]):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        OmegaConf.save(
            OmegaConf.create([f"seed={job}"]), sweep / str(job) / ".hydra/overrides.yaml"
        )
        payload = {"status": "completed", "metrics": {"val/acc_best": score}, "wall_time_s": 1.0}
        payload["gpu"] = {"index": gpu, "slot": 0, "name": "NVIDIA H200" if job else None}
        (sweep / str(job) / "results.json").write_text(json.dumps(payload))
    sweep_summary.write_summary(sweep, "val/acc_best", "max")
    table = pd.read_csv(sweep / "summary.csv")
    assert list(table.columns[:4]) == ["job", "seed", "status", "gpu"]
    assert list(table["gpu"]) == [1, 0, 0] and list(table["job"]) == [1, 0, 2]
    assert "| gpu |" in (sweep / "summary.md").read_text().replace("  ", " ").replace("  ", " ")


# ---- through the command line (slow: every job is a process of its own) ----------------------
def assignments(sweep: Path) -> dict[int, tuple]:
    """job -> (slot, start, end, returncode) from the pool's log."""
    spans: dict[int, dict] = {}
    for line in (sweep / ".gpus" / "assignments.jsonl").read_text().splitlines():
        entry = json.loads(line)
        span = spans.setdefault(entry["job"], {})
        span["slot"] = _pool.Slot(entry["gpu"], entry["slot"])
        span[entry["event"]] = entry["time"]
        span["returncode"] = entry.get("returncode", span.get("returncode"))
    return {job: (s["slot"], s["start"], s["end"], s["returncode"]) for job, s in spans.items()}


def check_sweep(sweep: Path, jobs: int, gpus: list[str], jobs_per_gpu: int) -> dict[int, tuple]:
    """Every job recorded its slot in results.json as the pool assigned it; none shared a slot."""
    spans = assignments(sweep)
    assert sorted(spans) == list(range(jobs))
    assert_never_shared({j: s[:3] for j, s in spans.items()}, jobs_per_gpu, len(gpus))
    for job_dir in job_dirs(sweep):
        slot = spans[int(job_dir.name)][0]
        gpu = results(job_dir)["gpu"]
        assert (str(gpu["index"]), gpu["slot"]) == (slot.gpu, slot.index), job_dir
        assert gpu["index"] in {int(g) for g in gpus}
    return spans


GPU_POOL = ["hydra/launcher=gpu_pool", "trainer=cpu", NO_CURVES]
KILLED_AT_START = [  # the job with fault epoch 0 kills itself (SIGKILL) at its first batch
    "+callbacks.fault._target_=fault_injection.SignalAt",
    "+callbacks.fault.name=KILL",
]


@pytest.mark.slow
def test_two_gpus_four_jobs_one_killed_each_job_on_its_own_gpu(tmp_path):
    """Fake 2 GPUs x 1 job: 4 jobs, 2 at a time; the job killed with SIGKILL frees its GPU for the
    next one, is recorded as failed with its GPU, and the sweep ends with its summary."""
    run_sweep(
        [
            *GPU_POOL,
            "hydra.launcher.gpus=[0,1]",
            *KILLED_AT_START,
            "+callbacks.fault.epoch=0,7,8,9",
        ],
        tmp_path,
    )
    sweep = only_sweep_dir(tmp_path)
    spans = check_sweep(sweep, jobs=4, gpus=["0", "1"], jobs_per_gpu=1)
    killed = next(j for j in job_dirs(sweep) if "+callbacks.fault.epoch=0" in _overrides(j))
    done = results(killed)
    assert done["status"] == "failed" and done["error"]["type"] == "JobLost"
    assert "ended by SIGKILL on GPU" in done["error"]["message"]
    assert spans[int(killed.name)][3] == -signal.SIGKILL
    # its slot went to a job that started after it died
    slot, _, died, _ = spans[int(killed.name)]
    assert any(s == slot and start >= died for s, start, _, _ in spans.values())
    others = [j for j in job_dirs(sweep) if j != killed]
    assert all(results(j)["status"] == "completed" for j in others)
    assert {results(j)["gpu"]["threads"] for j in others} == {max(1, _pool.available_cores() // 2)}

    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["status"]) == ["completed"] * 3 + ["failed"]
    assert set(table["gpu"]) <= {0, 1} and table["gpu"].notna().all()
    assert "JobLost" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_two_jobs_share_one_gpu_never_three(tmp_path):
    run_sweep(
        [*GPU_POOL, "hydra.launcher.gpus=[0]", "hydra.launcher.jobs_per_gpu=2", "seed=1,2,3"],
        tmp_path,
    )
    sweep = only_sweep_dir(tmp_path)
    spans = check_sweep(sweep, jobs=3, gpus=["0"], jobs_per_gpu=2)
    assert {slot.name for slot, *_ in spans.values()} == {"0.0", "0.1"}
    assert all(results(j)["status"] == "completed" for j in job_dirs(sweep))


@pytest.mark.slow
def test_the_preset_without_a_gpu_is_one_line(tmp_path):
    proc = run_cli(
        ["src/train.py", "-m", "hydra/launcher=gpu_pool", *SWEEP_FAST, f"paths.log_dir={tmp_path}"],
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "hydra/launcher=gpu_pool found no GPU on this machine" in errors[0], proc.stderr
    assert errors[1:] == [], proc.stderr  # the one line alone (core/expkit/run/cli.py)


def _overrides(job_dir: Path) -> list[str]:
    return list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
