"""Sweeps: grid, joblib, submitit_local, Optuna with resume, failing jobs, DDP inside a multirun,
and the summary every multirun writes.

The command-line tests are `slow` (each starts `python src/train.py -m ...`, one short digits fit
per job); the summary, the resumable sweeper, the DDP rank command and the launcher presets are
also tested in-process, in well under a second each.
"""

import json
import math
import os
import subprocess
from itertools import product
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from expkit.sweeps import summary as sweep_summary
from expkit.sweeps.ddp import job_command
from helpers import CONFIG_DIR, FAST, ROOT, results, run_cli
from src.train import train

#: every command-line sweep below: one short epoch, no printed config or summaries, light logger
SWEEP_FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.model_summary=null",
    "callbacks.rich_progress_bar=null",
]
#: ... and no curves.png per job (matplotlib costs about a second a job)
NO_CURVES = "callbacks.history.plot=false"


# ---- helpers ---------------------------------------------------------------------------------
def run_sweep(args: list[str], log_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python src/train.py -m <args>` as a user types it, writing under `log_dir`; must exit 0."""
    command = ["src/train.py", "-m", *args, *SWEEP_FAST, f"paths.log_dir={log_dir}"]
    proc = run_cli(command, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(command)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def only_sweep_dir(log_dir: Path, task: str = "train") -> Path:
    """The one sweep directory a multirun made (two would mean jobs wrote elsewhere)."""
    sweeps = sorted((log_dir / task / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def overrides(job_dir: Path) -> list[str]:
    return list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))


# ---- the command line (slow) -----------------------------------------------------------------
@pytest.mark.slow
def test_grid_sweep_runs_every_combination_into_its_own_directory(tmp_path):
    run_sweep(["optimizer.lr=1e-3,1e-2", "seed=1,2"], tmp_path)
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    combos = set()
    for job in jobs:
        done = results(job)
        assert done["status"] == "completed" and 0 <= done["metrics"]["test/acc"] <= 1
        assert Path(done["output_dir"]) == job
        for name in ("config.yaml", "train.log", "history.csv", "curves.png"):
            assert (job / name).is_file(), (job, name)
        assert (job / "checkpoints" / "last.ckpt").is_file()
        combos.add(tuple(o for o in overrides(job) if o.startswith(("optimizer.lr", "seed"))))
    expected = product(["optimizer.lr=0.001", "optimizer.lr=0.01"], ["seed=1", "seed=2"])
    assert combos == set(expected)

    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 4 and set(table["status"]) == {"completed"}
    assert table["val/acc_best"].is_monotonic_decreasing  # sorted by the optimized metric
    seeds = pd.read_csv(sweep / "summary_seeds.csv")
    assert sorted(seeds["optimizer.lr"]) == [0.001, 0.01] and set(seeds["completed"]) == {2}
    assert "Mean ± std over seeds" in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").stat().st_size > 1000


@pytest.mark.slow
def test_failed_jobs_are_recorded_and_a_parallel_sweep_goes_on(tmp_path):
    """joblib, 2 workers: two jobs fail on a bad value, one on a NaN loss, one completes."""
    run_sweep(
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "debug=nan_loss",
            "callbacks.inject_nan.at_epoch=0,null",
            "optimizer.lr=-1,1e-3",
            NO_CURVES,
        ],
        tmp_path,
    )
    sweep = only_sweep_dir(tmp_path, task="debug")  # workers used the parent's sweep directory
    errors = {}
    for job in job_dirs(sweep):
        done = results(job)
        lr = next(o for o in overrides(job) if o.startswith("optimizer.lr"))
        nan = "callbacks.inject_nan.at_epoch=0" in overrides(job)
        errors[(lr, nan)] = (done["status"], (done.get("error") or {}).get("type"))
    assert errors == {
        ("optimizer.lr=-1", True): ("failed", "ConfigError"),
        ("optimizer.lr=-1", False): ("failed", "ConfigError"),
        ("optimizer.lr=0.001", True): ("failed", "NonFiniteLossError"),
        ("optimizer.lr=0.001", False): ("completed", None),
    }
    table = pd.read_csv(sweep / "summary.csv")
    assert list(table["status"]) == ["completed", "failed", "failed", "failed"]
    assert table["error"].str.contains("The training loss is nan").sum() == 1
    assert "optimizer.lr=-1 is not allowed" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_submitit_local_jobs_share_the_sweep_directory(tmp_path):
    run_sweep(["hydra/launcher=submitit_local", "optimizer.lr=1e-3,1e-2", NO_CURVES], tmp_path)
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    assert all(results(j)["status"] == "completed" for j in jobs)
    assert (sweep / ".submitit").is_dir() and (sweep / "summary.csv").is_file()


@pytest.mark.slow
def test_ddp_inside_a_multirun_keeps_every_rank_in_its_job(tmp_path):
    run_sweep(["trainer=ddp_sim", "optimizer.lr=1e-3,1e-2", NO_CURVES], tmp_path)
    assert [p.name for p in (tmp_path / "train").iterdir()] == ["multiruns"]  # no stray runs/
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    assert {p.name for p in sweep.iterdir() if p.is_file()} >= {"multirun.yaml", "summary.csv"}
    for job in jobs:
        metrics = results(job)["metrics"]
        assert {"test/acc", "test/loss"} <= set(metrics)
        assert not (job / "0").exists() and not (job / "1").exists()


# ---- the pieces, in-process ------------------------------------------------------------------
def write_job(
    sweep: Path, name: str, overrides: list[str], status: str | None, metrics=None, error=None
) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if status is None:  # a job killed before it wrote results.json
        return
    payload = {"status": status, "metrics": metrics or {}, "wall_time_s": 1.5}
    payload["output_dir"] = str(job)
    if error:
        payload["error"] = {"type": "ValueError", "message": error, "traceback": "..."}
    (job / "results.json").write_text(json.dumps(payload))


@pytest.fixture
def synthetic_sweep(tmp_path):
    """lr x seed, one failed job and one that never finished."""
    sweep = tmp_path / "sweep"
    scores = {(0.001, 1): 0.80, (0.001, 2): 0.90, (0.01, 1): 0.95, (0.01, 2): 0.97}
    for i, ((lr, seed), score) in enumerate(scores.items()):
        metrics = {"val/acc_best": score, "test/acc": score - 0.01, "train/loss": 0.1}
        write_job(
            sweep, str(i), [f"optimizer.lr={lr}", f"seed={seed}", "model=mlp"], "completed", metrics
        )
    write_job(sweep, "4", ["optimizer.lr=0.1", "seed=1", "model=mlp"], "failed", {}, "boom")
    write_job(sweep, "5", ["optimizer.lr=0.1", "seed=2", "model=mlp"], None)
    return sweep


def test_summary_lists_every_job_sorted_with_seed_means(synthetic_sweep):
    summary = sweep_summary.write_summary(synthetic_sweep, "val/acc_best", "max")
    table = pd.read_csv(synthetic_sweep / "summary.csv")
    assert list(table["job"]) == [3, 2, 1, 0, 4, 5]  # best first; failed and missing last
    assert list(table["status"]) == ["completed"] * 4 + ["failed", "missing"]
    assert table.loc[4, "error"] == "ValueError: boom"
    assert summary.swept == ["optimizer.lr", "seed"] and summary.common == ["model=mlp"]
    assert {"test/acc", "wall_time_s", "run_dir", "train/loss"} <= set(table.columns)

    seeds = pd.read_csv(synthetic_sweep / "summary_seeds.csv").set_index("optimizer.lr")
    assert seeds.loc[0.01, "val/acc_best mean"] == pytest.approx(0.96)
    assert seeds.loc[0.01, "val/acc_best std"] == pytest.approx(0.01414, abs=1e-4)
    assert seeds.loc[0.1, "jobs"] == 2 and seeds.loc[0.1, "completed"] == 0
    assert list(seeds.index) == [0.01, 0.001, 0.1]

    markdown = (synthetic_sweep / "summary.md").read_text()
    assert "6 jobs: 4 completed, 1 failed, 1 missing." in markdown
    assert "Best: job 3 (optimizer.lr=0.01 seed=2), val/acc_best = 0.9700." in markdown
    assert "| 0.9600 ± 0.0141" in markdown and "train/loss" not in markdown
    assert (synthetic_sweep / "summary.png").stat().st_size > 1000


def test_summary_cli_rebuilds_from_the_files_alone(synthetic_sweep, capsys):
    OmegaConf.save(
        OmegaConf.create({"optimized_metric": "test/acc", "monitor": {"mode": "min"}}),
        synthetic_sweep / "multirun.yaml",
    )
    assert sweep_summary.main([str(synthetic_sweep)]) == 0
    table = pd.read_csv(synthetic_sweep / "summary.csv")
    assert list(table["job"][:4]) == [0, 1, 2, 3]  # test/acc, lowest first, as the sweep said
    assert (
        sweep_summary.main([str(synthetic_sweep), "--metric", "val/acc_best", "--mode", "max"]) == 0
    )
    assert list(pd.read_csv(synthetic_sweep / "summary.csv")["job"][:2]) == [3, 2]


def test_summary_cli_names_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_summary.main([str(tmp_path)])
    assert exc.value.code == 2 and "No job directories" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep_summary.main([str(tmp_path), "--mode", "best"])


def test_a_worker_process_resolves_the_sweep_directory_of_its_parent():
    """Hydra hands each job the sweep's resolver cache (`OmegaConf.copy_cache`): `${run_token:}`
    must come from it, not from the worker's own token, or jobs land in another directory."""
    from expkit.utils.resolvers import _run_token

    def sweep_config():
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", return_hydra_config=True)

    parent = sweep_config()
    sweep_dir = parent.hydra.sweep.dir
    _run_token.cache_clear()  # a fresh process draws a new token
    try:
        assert sweep_config().hydra.sweep.dir != sweep_dir
        job = sweep_config()
        OmegaConf.copy_cache(from_config=parent, to_config=job)
        assert job.hydra.sweep.dir == sweep_dir
    finally:
        _run_token.cache_clear()


def test_a_diverged_run_is_recorded_as_failed(make_cfg):
    cfg = make_cfg("train", [*FAST, "debug=nan_loss"])
    # the step-level guard (callbacks.finite_loss) stops it first; fail_if_diverged backs it up
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 0"):
        train(cfg)
    done = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert done["status"] == "failed" and "nan" in done["error"]["message"]


def test_a_diverged_run_without_the_step_guard_is_still_failed(make_cfg):
    cfg = make_cfg("train", [*FAST, "debug=nan_loss", "~callbacks.finite_loss"])
    with pytest.raises(FloatingPointError, match=r"train/loss=nan"):
        train(cfg)


@pytest.fixture
def multirun_job(tmp_path):
    """Hydra's config of job #1 of `python src/train.py -m trainer=ddp_sim optimizer.lr=...`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["trainer=ddp_sim", "optimizer.lr=0.01", f"paths.log_dir={tmp_path}"],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.overrides.hydra = ["hydra/launcher=basic", "hydra.mode=MULTIRUN"]
        cfg.hydra.runtime.output_dir = str(tmp_path / "sweep" / "1")
        cfg.hydra.runtime.cwd = str(ROOT)
        cfg.hydra.job.num = 1
    HydraConfig.instance().set_config(cfg)
    yield cfg
    HydraConfig.instance().cfg = None


def test_ddp_ranks_of_a_multirun_job_rerun_that_job_only(multirun_job, tmp_path):
    command, cwd = job_command("src/train.py", local_rank=1)
    assert command[1] == str(ROOT / "src" / "train.py") and cwd == str(ROOT)
    args = command[2:]
    assert "-m" not in args and "hydra.mode=MULTIRUN" not in args and args[-1] == "hydra.mode=RUN"
    assert {"trainer=ddp_sim", "optimizer.lr=0.01", "hydra/launcher=basic"} <= set(args)
    assert f'hydra.run.dir="{tmp_path / "sweep" / "1"}"' in args


@pytest.mark.parametrize(
    ("rank", "verdict"), [("0", "failed, the sweep goes on"), ("1", "Rank stopped")]
)
def test_only_rank_zero_calls_a_multirun_job_failed(
    multirun_job, monkeypatch, caplog, rank, verdict
):
    """A rank > 0 sees rank 0 leave (a requeue, a time limit) as an error of its own: no verdict."""
    from expkit.sweeps.job import run_job

    def task(cfg):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr("expkit.sweeps.job.in_multirun", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setenv("RANK", rank)
    assert math.isnan(run_job(task, multirun_job, script="src/train.py"))
    assert verdict in caplog.text and "Connection closed by peer" in caplog.text
    if rank != "0":
        assert "failed" not in caplog.text


def test_launcher_presets_instantiate():
    presets = {"joblib": "TolerantJoblibLauncher", "submitit_local": "TolerantLocalLauncher"}
    presets["gpu_pool"] = "GpuPoolLauncher"  # its sweeps: core/tests/test_gpu_pool.py
    for name, cls in presets.items():
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", [f"hydra/launcher={name}"], return_hydra_config=True)
        assert type(instantiate(cfg.hydra.launcher)).__name__ == cls


def test_slurm_preset_writes_the_sbatch_script_we_mean(tmp_path, monkeypatch):
    """With stand-ins for srun, sinfo and sbatch: the script asks for the GPUs, one task per GPU,
    the time limit and the requeue signal; sbatch's refusal is the error."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    # the launcher checks the resources against the partition first (sinfo: partition|node|cpus|MB|gres)
    (bin_dir / "sinfo").write_text(
        "#!/bin/sh\nprintf 'gpu|n1|64|512000|gpu:4\\ngpu|n2|64|512000|gpu:4\\n'\n"
    )
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncat "$1" > "$SBATCH_CAPTURE"\necho "no cluster here" >&2\nexit 1\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_CAPTURE", str(tmp_path / "job.sh"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            [
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.nodes=2",
                "hydra.launcher.gpus_per_node=4",
                f"paths.log_dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    try:
        launcher = instantiate(cfg.hydra.launcher)
        launcher.setup(hydra_context=None, task_function=None, config=cfg)
        with pytest.raises(Exception, match="no cluster here"):
            launcher.launch([["optimizer.lr=0.01"]], initial_job_idx=0)
    finally:
        HydraConfig.instance().cfg = None
    script = (tmp_path / "job.sh").read_text()
    for line in (
        "--partition=gpu",
        "--nodes=2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--time=1440",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}\n" in script, line
