"""The project's Optuna searches (configs/hparams_search/): a study resumed by the same command, a
resumed study running only its missing trials, every search composing and searching keys that
exist, and Optuna over cross-validation folds. A project generated without Optuna has none of
this file; the sweeper itself is the library's (tests/test_optuna.py)."""

import math
import statistics

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from helpers import CONFIG_DIR, results
from hydra_plugins.expkit_optuna_sweeper.resumable_optuna_sweeper import ResumableOptunaSweeper
from test_cv import ONE_EPOCH, cli_train
from test_optuna import StandInLauncher
from test_sweeps import NO_CURVES, job_dirs, run_sweep


@pytest.mark.slow
def test_optuna_study_resumes_when_the_same_command_runs_again(tmp_path):
    search = ["hparams_search=digits_optuna", NO_CURVES]
    run_sweep([*search, "hydra.sweeper.n_trials=3"], tmp_path)
    proc = run_sweep([*search, "hydra.sweeper.n_trials=5"], tmp_path)
    assert "3 trials so far" in proc.stdout + proc.stderr

    sweep = tmp_path / "train" / "optuna" / "digits_optuna"
    study = optuna.load_study(study_name="digits_optuna", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3", "4"]  # job k = trial k, none overwritten
    for trial, job in zip(study.trials, jobs, strict=True):
        assert results(job)["metrics"]["val/acc_best"] == pytest.approx(trial.value)
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["job"]) == [0, 1, 2, 3, 4]
    assert table["val/acc_best"].iloc[0] == pytest.approx(study.best_value)
    assert (sweep / "optimization_results.yaml").is_file()


def test_resumed_study_runs_only_the_missing_trials_and_numbers_on(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.5, 0.7):
        trial = study.ask()
        study.tell(trial, value)
    study.ask()  # left RUNNING, as by a sweep that was killed
    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.TPESampler(seed=0),
        direction="maximize",
        storage=storage,
        study_name="s",
        n_trials=5,
        n_jobs=1,
        max_failure_rate=1.0,
        search_space=None,
        custom_search_space=None,
        params=None,
    )
    sweep = tmp_path / "sweep"
    sweeper.config = sweeper.sweeper.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}}}
    )
    launcher = sweeper.sweeper.launcher = StandInLauncher([[0.6], [0.8]], sweep)
    sweeper.sweep([])
    # 2 trials more (n_trials is the size the study reaches), as jobs 3 and 4 (job k = trial k)
    assert [idx for idx, _ in launcher.calls] == [3, 4]
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert states == [complete, complete, fail, complete, complete]


@pytest.mark.parametrize(
    "search",
    [
        s
        for s in ("digits_optuna", "mnist_optuna")
        if (CONFIG_DIR / "hparams_search" / f"{s}.yaml").is_file()
    ],
)
def test_hparams_searches_are_resumable_and_search_existing_keys(search):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ResumableOptunaSweeper")
    assert "${now:" not in OmegaConf.to_yaml(cfg.hydra.sweep)  # fixed: found again on resume
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[cfg.monitor.mode]
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{search} searches {key}, not in the config"


@pytest.mark.slow
def test_optuna_optimizes_the_mean_over_folds(tmp_path, cache_dir):
    import optuna

    args = [
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        "cv.folds=2",
        "trainer.max_epochs=1",
        *ONE_EPOCH[1:],
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
    ]
    code, out = cli_train(args, tmp_path)
    assert code == 0, out[-3000:]
    study_dir = tmp_path / "train" / "optuna" / "digits_optuna"
    study = optuna.load_study(
        study_name="digits_optuna", storage=f"sqlite:///{study_dir}/optuna.db"
    )
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        folds = [results(study_dir / str(trial.number) / f"fold_{k}") for k in range(2)]
        mean = statistics.fmean(f["metrics"]["val/acc_best"] for f in folds)
        assert math.isclose(trial.value, mean, abs_tol=1e-12)
        assert results(study_dir / str(trial.number))["metrics"]["val/acc_best"] == trial.value
