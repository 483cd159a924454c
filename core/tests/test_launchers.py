"""Every launcher survives every job death: a job killed with SIGKILL (what the OOM killer does) or
hung (SIGSTOP) past `hydra.launcher.job_timeout_s` is recorded `failed` in its results.json with
how it ended; the other jobs finish; the summary is written; the sweep exits 0.

The pieces run in-process with stand-in processes (the pool's time limit, submitit's controller,
the settings); the sweeps through the command line are `slow` (real signals from
core/tests/fault_injection.py). The GPU pool's own kill test is in core/tests/test_gpu_pool.py, SLURM's in
core/tests/test_slurm.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from expkit.sweeps import failed_jobs as _failed_jobs
from helpers import CONFIG_DIR, PYTHONPATH, results
from hydra_plugins.expkit_gpu_pool_launcher import _pool
from hydra_plugins.expkit_submitit_launcher import _local_controller
from test_sweeps import NO_CURVES, job_dirs, only_sweep_dir, overrides, run_sweep

#: the time limit of the sweeps below: well beyond a job's start on a loaded 2-core machine
#: (submitit starts the three jobs at once; the job that kills itself must die by its own SIGKILL)
TIME_LIMIT = "hydra.launcher.job_timeout_s=120"
#: three jobs, each sending itself a signal at its first batch: SIGKILL (dies), SIGSTOP (hangs),
#: SIGCONT (nothing happens to a running process: it completes)
KILL_AND_STOP = [
    "+callbacks.fault._target_=fault_injection.SignalAt",
    "+callbacks.fault.name=KILL,STOP,CONT",
    "+callbacks.fault.epoch=0",
]


# ---- the pieces ------------------------------------------------------------------------------
def test_the_pool_kills_a_job_past_its_time_limit_and_goes_on():
    def start(job, slot):
        if job == 1:  # stops itself: only SIGKILL ends it
            return subprocess.Popen(["sh", "-c", "kill -STOP $$; sleep 30"])
        return subprocess.Popen(["sleep", "0.2"])

    pool = _pool.Pool(
        _pool.make_slots(["cpu"], 2),
        start,
        lambda job, slot, proc: (job in pool.timed_out, proc.returncode),
        poll_s=0.02,
        job_timeout_s=1.0,
    )
    began = time.monotonic()
    assert pool.run(4) == [(False, 0), (True, -signal.SIGKILL), (False, 0), (False, 0)]
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("value", [0, -1, "ten", True, [5]])
def test_a_time_limit_that_is_not_a_positive_number_is_one_line(value):
    with pytest.raises(_failed_jobs.LauncherConfigError, match="job_timeout_s=.* is not allowed"):
        _failed_jobs.check_job_timeout(value)


def test_every_launcher_preset_has_the_time_limit_key():
    expected = {
        "joblib": "TolerantJoblibLauncher",
        "submitit_local": "TolerantLocalLauncher",
        "gpu_pool": "GpuPoolLauncher",
    }
    for name, cls in expected.items():
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                [f"hydra/launcher={name}", TIME_LIMIT],
                return_hydra_config=True,
            )
        launcher = instantiate(cfg.hydra.launcher)
        assert type(launcher).__name__ == cls and launcher.job_timeout_s == 120.0
    GlobalHydra.instance().clear()


#: a job's process as the launchers' job sides start it, with Hydra's plugin scan in the order a
#: real install gives (`expkit_*` before `hydra_*` in one site-packages: the stock schemas last)
JOB_SIDE_WITH_STOCK_SCHEMAS_SCANNED_LAST = """
import pkgutil, sys
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.singleton import Singleton
from hydra_plugins.expkit_joblib_launcher.schemas import restore_hydra_state

config_dir, time_limit = sys.argv[1:]
walk = pkgutil.walk_packages
pkgutil.walk_packages = lambda *a, **k: sorted(walk(*a, **k), key=lambda m: ".hydra_" in m[1])
for name in ("joblib", "submitit_local"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir, version_base="1.3"):   # the sweep's side
        sweep = compose("train", [f"hydra/launcher={name}"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    state = Singleton.get_state()   # what a launcher hands its jobs (with no Plugins instance)
    restore_hydra_state(state)      # the job's side: the pool's worker, submitit's job call
    Singleton.set_state(state)      # what the stock submitit job call does next
    job = loader.load_sweep_config(sweep, [f"hydra/launcher={name}", time_limit])
    print(name, job.hydra.launcher.job_timeout_s)
"""


def test_a_jobs_process_composes_our_launcher_presets_whatever_the_plugin_scan_order():
    """Each plugin scan re-registers the stock schemas of `joblib` and `submitit_local` (without
    our keys), and a job's process scans again when it restores Hydra's state."""
    proc = subprocess.run(
        [sys.executable, "-c", JOB_SIDE_WITH_STOCK_SCHEMAS_SCANNED_LAST, str(CONFIG_DIR), TIME_LIMIT],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["joblib", "120.0", "submitit_local", "120.0"]


def test_joblib_n_jobs_zero_is_one_line():
    from hydra_plugins.expkit_joblib_launcher.launcher import parallel_jobs

    with pytest.raises(_failed_jobs.LauncherConfigError, match="n_jobs=0 is not allowed"):
        parallel_jobs(0)
    assert parallel_jobs(-1) >= 1 and parallel_jobs(3) == 3


def test_the_submitit_controller_records_a_killed_and_a_hung_task(tmp_path):
    """submitit's own controller keeps its tasks' exit codes to itself; ours writes them down and
    kills a task past the time limit even when it is stopped."""
    for name, command, limit in [
        ("killed", "kill -9 $$", ""),
        ("hung", "kill -STOP $$; sleep 30", "1"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        env = {
            **os.environ,
            "SUBMITIT_LOCAL_NTASKS": "1",
            "SUBMITIT_LOCAL_COMMAND": f"sh -c '{command}'",
            "SUBMITIT_LOCAL_TIMEOUT_S": "60",
            "SUBMITIT_LOCAL_SIGNAL_DELAY_S": "5",
            "SUBMITIT_STDERR_TO_STDOUT": "",
            "SUBMITIT_LOCAL_WITH_SHELL": "",
            _local_controller.ENV_TIMEOUT: limit,
            "PYTHONPATH": PYTHONPATH,
        }
        proc = subprocess.run(
            [sys.executable, "-m", _local_controller.__name__, str(folder)],
            env=env,
            timeout=60,
            capture_output=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        (exit_json,) = (tmp_path / name).rglob("*_exit.json")
        ended = json.loads(exit_json.read_text())
        assert ended["exit_codes"] == [-signal.SIGKILL], (name, ended)
        assert ended["timed_out"] is (name == "hung")


# ---- through the command line (slow: real jobs, real signals) --------------------------------
def check_killed_and_stopped(sweep: Path, lost: str) -> None:
    """The KILL job: failed with SIGKILL; the STOP job: failed (time limit); the CONT job:
    completed; all three in the summary."""
    by_fault = {}
    for job in job_dirs(sweep):
        chosen = dict(o.split("=", 1) for o in overrides(job) if o.startswith("+callbacks.fault."))
        by_fault[chosen["+callbacks.fault.name"]] = results(job)
    killed, stopped = by_fault.pop("KILL"), by_fault.pop("STOP")
    assert killed["status"] == "failed" and killed["error"]["type"] == lost
    assert "SIGKILL" in killed["error"]["message"]
    assert stopped["status"] == "failed" and stopped["error"]["type"] == "TimeLimit"
    assert stopped["error"]["message"].startswith("failed (time limit)")
    assert by_fault["CONT"]["status"] == "completed"
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["status"]) == ["completed", "failed", "failed"]
    assert table["error"].str.contains("failed \\(time limit\\)").sum() == 1


@pytest.mark.slow
@pytest.mark.xdist_group("hung_jobs")  # with `-n`: one after the other (time limits)
def test_joblib_sweep_survives_a_killed_and_a_hung_job(tmp_path):
    run_sweep(
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            TIME_LIMIT,
            *KILL_AND_STOP,
            NO_CURVES,
        ],
        tmp_path,
    )
    sweep = only_sweep_dir(tmp_path)
    check_killed_and_stopped(sweep, "JobLost")


@pytest.mark.slow
@pytest.mark.xdist_group("hung_jobs")  # with `-n`: one after the other (time limits)
def test_submitit_local_sweep_survives_a_killed_and_a_hung_job(tmp_path):
    run_sweep(
        ["hydra/launcher=submitit_local", TIME_LIMIT, *KILL_AND_STOP,
         NO_CURVES],
        tmp_path,
    )  # fmt: skip
    check_killed_and_stopped(only_sweep_dir(tmp_path), "JobLost")
