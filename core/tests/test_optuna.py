"""Optuna studies: every failed trial is stored FAIL and the study goes on; pruning.

The sweeper's study loop is tested in-process with a stand-in launcher (every way a job can end,
in well under a second); the rest through the command a user types, `python src/train.py -m
hparams_search=digits_optuna ...` in a temporary log directory (`slow`): the issue's command,
each failure class, parallel jobs, DDP, a killed job, resume and pruning.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from expkit.callbacks.optuna_pruning import TrialPruned
from helpers import PYTHONPATH, ROOT
from hydra_plugins.expkit_optuna_sweeper._pruners import PrunerConfigError, make_pruner
from hydra_plugins.expkit_optuna_sweeper.resumable_optuna_sweeper import ResumableOptunaSweeper

#: one short epoch per trial, light logging (as core/tests/test_sweeps.py)
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.model_summary=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.history.plot=false",
]
SEARCH = "hparams_search=digits_optuna"
#: the median pruner, pruning from the second trial on (Optuna's default waits for 5)
MEDIAN_FROM_1 = "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner, n_startup_trials: 1}"


# ---- helpers ---------------------------------------------------------------------------------
def train_m(args: list[str], log_dir: Path, ok: bool = True) -> subprocess.CompletedProcess:
    """`python src/train.py -m <args>` under `log_dir`; with `ok`, it must exit 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PYTHONPATH, env.get("PYTHONPATH")]))
    command = [sys.executable, "src/train.py", "-m", *args, f"paths.log_dir={log_dir}"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"{' '.join(command)}\n{output[-6000:]}"
    return proc


def study_dir(log_dir: Path, task: str = "train", name: str = "digits_optuna") -> Path:
    return log_dir / task / "optuna" / name


def load(sweep: Path, name: str = "digits_optuna") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep}/optuna.db")


def results(sweep: Path, trial: int) -> dict:
    return json.loads((sweep / str(trial) / "results.json").read_text())


def summary(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "summary.csv").set_index("job").sort_index()


# ---- the study loop, in-process --------------------------------------------------------------
class StandInLauncher:
    """Hands back, batch by batch, what jobs end with; `"lost"` makes `launch` raise."""

    def __init__(self, batches: list, sweep: Path) -> None:
        self.batches, self.sweep, self.calls = list(batches), sweep, []

    def launch(self, overrides, initial_job_idx):
        self.calls.append((initial_job_idx, [list(o) for o in overrides]))
        outcomes = self.batches.pop(0)
        if outcomes == "lost":
            raise RuntimeError(
                "A worker process managed by the executor was unexpectedly terminated"
            )
        returns = []
        for i, outcome in enumerate(outcomes):
            job = self.sweep / str(initial_job_idx + i)
            job.mkdir(parents=True)
            ret = JobReturn(overrides=list(overrides[i]))
            ret.cfg = OmegaConf.create({"optimized_metric": "val/acc_best"})
            ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job)}}})
            ret.status = JobStatus.COMPLETED
            if isinstance(outcome, Exception):
                ret.status = JobStatus.FAILED
            elif outcome is not None and math.isnan(outcome):  # what expkit.sweeps.job returns
                payload = {"status": "failed", "metrics": {}}
                payload["error"] = {"type": "ConfigError", "message": "optimizer.lr=-1 is bad"}
                (job / "results.json").write_text(json.dumps(payload))
            elif outcome is None:  # a run that completed without the optimized metric
                payload = {"status": "completed", "metrics": {"val/loss": 0.3}}
                (job / "results.json").write_text(json.dumps(payload))
            ret.return_value = outcome
            returns.append(ret)
        return returns


def test_every_way_a_trial_ends_is_stored_and_the_study_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    storage = f"sqlite:///{tmp_path}/optuna.db"
    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
        storage=storage,
        study_name="s",
        n_trials=8,
        n_jobs=2,
        max_failure_rate=1.0,
        search_space=None,
        custom_search_space=None,
        params=OmegaConf.create({"optimizer.lr": "interval(0.001, 0.1)"}),
        pruner="median",
    )
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    sweeper.config = sweeper.sweeper.config = config
    launcher = StandInLauncher(
        [
            [0.5, math.nan],  # completed; failed in the job (expkit.sweeps.job returns NaN)
            [None, RuntimeError("raised past the job")],  # no metric; an exception reached Hydra
            [TrialPruned("Trial 4 pruned at epoch 1: ...", 1, {"val/acc": 0.2}), 0.7],
            "lost",  # the launcher raised: a killed joblib worker
        ],
        sweep,
    )
    sweeper.sweeper.launcher = launcher
    sweeper.sweep([])

    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    reasons = [t.system_attrs.get("fail_reason", "") for t in study.trials]
    assert "results.json: ConfigError: optimizer.lr=-1 is bad" in reasons[1]
    assert "did not produce optimized_metric='val/acc_best'" in reasons[2]
    assert "metrics: val/loss" in reasons[2]
    assert reasons[3] == "RuntimeError: raised past the job"
    assert "the launcher lost the job: RuntimeError: A worker process" in reasons[6] == reasons[7]
    assert study.best_value == 0.7
    # job k = trial k, and each job is told its trial (the pruning callback reports to it)
    assert [idx for idx, _ in launcher.calls] == [0, 2, 4, 6]
    for idx, overrides in launcher.calls:
        assert [o[-1] for o in overrides] == [f"++optuna_trial={idx}", f"++optuna_trial={idx + 1}"]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == 0.7 and (sweep / "multirun.yaml").is_file()


def test_too_many_failures_stops_the_study_with_one_line(tmp_path):
    from hydra_plugins.expkit_optuna_sweeper._impl import TooManyFailures

    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
        storage=f"sqlite:///{tmp_path}/optuna.db",
        study_name="s",
        n_trials=4,
        n_jobs=2,
        max_failure_rate=0.4,
        search_space=None,
        custom_search_space=None,
        params=OmegaConf.create({"optimizer.lr": "interval(0.001, 0.1)"}),
    )
    sweeper.config = sweeper.sweeper.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}
    )
    sweeper.sweeper.launcher = StandInLauncher([[0.5, math.nan], [0.6, 0.7]], tmp_path / "sweep")
    with pytest.raises(TooManyFailures, match=r"1 of 2 trials .*max_failure_rate=0.4 allows"):
        sweeper.sweep([])
    states = [
        t.state for t in optuna.load_study(study_name="s", storage=sweeper.sweeper.storage).trials
    ]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("median", "MedianPruner"),
        ("percentile", "PercentilePruner"),
        ("hyperband", "HyperbandPruner"),
        ("successive_halving", "SuccessiveHalvingPruner"),
        ({"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": 2}, "MedianPruner"),
        ("none", None),
        (None, None),
    ],
)
def test_pruners_by_name_or_config(spec, cls):
    pruner = make_pruner(spec)
    assert (type(pruner).__name__ if pruner is not None else None) == cls


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("medain", "hydra.sweeper.pruner='medain' is not a pruner. Allowed: median, percentile"),
        ({"_target_": "os.system"}, "_target_='os.system' is not a pruner of optuna.pruners"),
        (
            {"_target_": "optuna.pruners.MedianPruner", "n_warmup": 2},
            "cannot be built: TypeError: .*n_warmup",
        ),
        (3, "hydra.sweeper.pruner=3 \\(int\\) is not a pruner"),
        ({"n_startup_trials": 2}, "hydra.sweeper.pruner=.*is not a pruner \\(no _target_\\)"),
    ],
)
def test_bad_pruners_get_one_line_naming_the_value(spec, message):
    with pytest.raises(PrunerConfigError, match=message):
        make_pruner(spec)


# ---- the command line ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_issue_command_records_every_failed_trial_and_exits_0(tmp_path):
    """limit_val_batches=0.01 of digits' one validation batch is 0 batches: Lightning raises
    MisconfigurationException in the sanity check, the job returns NaN; each trial is FAIL."""
    proc = train_m(
        [SEARCH, "hydra.sweeper.n_trials=3", "trainer.limit_val_batches=0.01", *FAST], tmp_path
    )
    sweep = study_dir(tmp_path)
    study = load(sweep)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    for trial in study.trials:
        assert (
            "MisconfigurationException: You requested to check 0.01"
            in (trial.system_attrs["fail_reason"])
        )
        assert results(sweep, trial.number)["error"]["type"] == "MisconfigurationException"
    assert "Trial 2 failed: the job returned nan" in proc.stderr + proc.stdout
    table = summary(sweep)
    assert list(table.index) == [0, 1, 2] and set(table["status"]) == {"failed"}
    assert table["error"].str.contains("limit_val_batches").all()


@pytest.mark.slow
def test_an_unknown_pruner_is_one_line_before_any_trial(tmp_path):
    proc = train_m([SEARCH, "hydra.sweeper.pruner=medain", *FAST], tmp_path, ok=False)
    assert proc.returncode == 1
    assert "hydra.sweeper.pruner='medain' is not a pruner. Allowed: median" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "train" / "optuna").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "task", "reason"),
    [
        (
            ["+callbacks.fault._target_=fault_injection.RaiseAt", "+callbacks.fault.epoch=0"],
            "train",
            "RuntimeError: injected failure at epoch 0",
        ),
        (["debug=nan_loss"], "debug", "NonFiniteLossError: The training loss is nan"),
        (["optimized_metric=test/acc", "test=false"], "train", "was not produced by this job"),
    ],
    ids=["exception", "nan-loss", "no-optimized-metric"],
)
def test_each_failure_class_is_a_failed_trial(tmp_path, args, task, reason):
    train_m([SEARCH, "hydra.sweeper.n_trials=2", *FAST, *args], tmp_path)
    sweep = study_dir(tmp_path, task)
    trials = load(sweep).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(reason in t.system_attrs["fail_reason"] for t in trials)
    assert len(summary(sweep)) == 2


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_a_killed_parallel_job_is_a_failed_trial(tmp_path):
    kill = [
        "+callbacks.fault._target_=fault_injection.SignalAt",
        "+callbacks.fault.name=KILL",
        "+callbacks.fault.epoch=0",
    ]
    # the basic launcher runs the job in the sweep's process: SIGKILL ends the sweep itself
    proc = train_m([SEARCH, "hydra.sweeper.n_trials=2", *FAST, *kill], tmp_path, ok=False)
    assert proc.returncode == -9
    sweep = study_dir(tmp_path)
    assert [t.state for t in load(sweep).trials] == [TrialState.RUNNING]
    # joblib: each job is a process of its own; the killed ones are failed trials, the study goes on
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    proc = train_m([SEARCH, "hydra.sweeper.n_trials=3", *parallel, *FAST, *kill], tmp_path)
    assert "Trial 0 was left running by an interrupted sweep: marked failed." in proc.stdout
    trials = load(sweep).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    for trial in trials[1:]:
        done = results(sweep, trial.number)
        assert done["status"] == "failed" and "ended by SIGKILL" in done["error"]["message"]
    # the same command without the fault: the study continues to n_trials
    train_m([SEARCH, "hydra.sweeper.n_trials=5", *parallel, *FAST], tmp_path)
    states = [t.state for t in load(sweep).trials]
    assert states == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 2
    # the trial the basic launcher's sweep died with has no results; the killed jobs are failed
    assert list(summary(sweep)["status"]) == ["missing"] + ["failed"] * 2 + ["completed"] * 2


@pytest.mark.slow
def test_parallel_trials_with_failures_and_a_resumed_study(tmp_path):
    """joblib, 2 trials at a time; `optimizer.lr=choice(-1, 0.001)` makes some trials fail."""
    args = [
        SEARCH,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "optimizer.lr=choice(-1,0.001)",
        *FAST,
    ]
    train_m([*args, "hydra.sweeper.n_trials=4"], tmp_path)
    proc = train_m([*args, "hydra.sweeper.n_trials=6"], tmp_path)
    assert "4 trials so far" in proc.stdout
    sweep = study_dir(tmp_path)
    trials = load(sweep).trials
    assert len(trials) == 6
    for trial in trials:
        done = results(sweep, trial.number)
        if trial.params["optimizer.lr"] == -1:
            assert trial.state == TrialState.FAIL and done["error"]["type"] == "ConfigError"
            assert "optimizer.lr=-1 is not allowed" in trial.system_attrs["fail_reason"]
        else:
            assert trial.state == TrialState.COMPLETE and done["status"] == "completed"
            assert done["metrics"]["val/acc_best"] == pytest.approx(trial.value)
    assert {t.params["optimizer.lr"] for t in trials} == {-1, 0.001}  # both kinds happened
    assert sorted(summary(sweep).index) == list(range(6))


@pytest.mark.slow
def test_failed_ddp_trials_do_not_end_the_study(tmp_path):
    train_m(
        [SEARCH, "trainer=ddp_sim", "hydra.sweeper.n_trials=2", "trainer.limit_val_batches=0.01"]
        + FAST,
        tmp_path,
    )
    sweep = study_dir(tmp_path)
    trials = load(sweep).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all("MisconfigurationException" in t.system_attrs["fail_reason"] for t in trials)
    assert not (tmp_path / "train" / "runs").exists()  # the ranks stayed in their job


# ---- pruning ---------------------------------------------------------------------------------
def assert_pruned_trials_recorded(sweep: Path, max_epochs: int) -> list:
    """Every PRUNED trial: results.json `pruned` with its epochs and last value, in the summary."""
    study = load(sweep)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    table = summary(sweep)
    for trial in pruned:
        done = results(sweep, trial.number)
        assert done["status"] == "pruned", done
        epoch = done["pruned_at_epoch"]
        assert done["epochs"] == epoch + 1 < max_epochs + 1
        assert trial.last_step == epoch
        assert done["metrics"]["val/acc"] == pytest.approx(trial.intermediate_values[epoch])
        assert f"Trial {trial.number} pruned at epoch {epoch}: val/acc=" in done["error"]["message"]
        assert "median" in done["error"]["message"]
        assert table.loc[trial.number, "status"] == "pruned"
        assert table.loc[trial.number, "val/acc_best"] == pytest.approx(
            done["metrics"]["val/acc_best"]
        )
        assert not (sweep / str(trial.number) / "checkpoints" / "interrupted.ckpt").exists()
    for trial in study.trials:
        if (
            trial.state == TrialState.COMPLETE
        ):  # every epoch was reported, none from the sanity check
            assert sorted(trial.intermediate_values) == list(range(len(trial.intermediate_values)))
    return pruned


@pytest.mark.slow
def test_median_pruning_stops_trials_and_records_them(tmp_path):
    args = [SEARCH, MEDIAN_FROM_1, "hydra.sweeper.n_trials=6", *FAST, "trainer.max_epochs=3"]
    proc = train_m(args, tmp_path)
    sweep = study_dir(tmp_path)
    pruned = assert_pruned_trials_recorded(sweep, max_epochs=3)
    assert pruned, "no trial was pruned"
    output = proc.stdout + proc.stderr
    assert "is worse than the median" in output and "Error executing job" not in output


@pytest.mark.slow
def test_pruning_with_parallel_trials_and_a_resumed_study(tmp_path):
    """Trials run two at a time; a learning rate too small to learn anything in three epochs is
    among the choices, so some trial is worse than the median whatever else the sampler picks."""
    args = [
        SEARCH,
        MEDIAN_FROM_1,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "optimizer.lr=choice(0.0000001,0.01)",
        *FAST,
        "trainer.max_epochs=3",
    ]
    train_m([*args, "hydra.sweeper.n_trials=4"], tmp_path)
    train_m([*args, "hydra.sweeper.n_trials=8"], tmp_path)
    sweep = study_dir(tmp_path)
    trials = load(sweep).trials
    assert len(trials) == 8
    pruned = assert_pruned_trials_recorded(sweep, max_epochs=3)
    assert any(t.params["optimizer.lr"] == 1e-7 for t in pruned), [t.params for t in trials]


@pytest.mark.slow
def test_ddp_ranks_stop_together_when_a_trial_is_pruned(tmp_path):
    args = [SEARCH, MEDIAN_FROM_1, "trainer=ddp_sim", "hydra.sweeper.n_trials=4", *FAST]
    train_m([*args, "trainer.max_epochs=3"], tmp_path)
    sweep = study_dir(tmp_path)
    assert assert_pruned_trials_recorded(sweep, max_epochs=3), "no trial was pruned"
