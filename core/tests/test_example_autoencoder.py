"""The autoencoder example (an unsupervised module with its own metric names and optimizer):
cross-validation, the checks made before its first step, and the Optuna search over its own
arguments. A generated project without the example has none of this file."""

import math
from pathlib import Path

import pytest

from expkit.errors import ConfigError
from expkit.run.module_checks import check_ignored_groups
from helpers import FAST, compose_config, results
from src.train import train
from test_any_module import SWEEP_FAST, cli, sweep_jobs


def test_cross_validation_of_an_example(tmp_path, cache_dir):
    overrides = [*FAST, "model=autoencoder", "cv.folds=3", "trainer.max_epochs=1"]
    means = train(compose_config("train", tmp_path / "cv", overrides, cache_dir))
    assert math.isfinite(means["test_loss"]) and math.isfinite(means["val_loss"])
    summary = (tmp_path / "cv" / "cv_summary.csv").read_text()
    assert "test_loss" in summary and all(
        (tmp_path / "cv" / f"fold_{k}").is_dir() for k in range(3)
    )


def test_a_monitor_the_module_never_logs_is_refused_before_training(make_cfg):
    cfg = make_cfg("train", [*FAST, "model=autoencoder", "monitor.metric=val/acc"])
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert "monitor.metric='val/acc'" in message and "never logged" in message
    assert (
        "train_loss, val_loss" in message and "monitor.metric=val_loss monitor.mode=min" in message
    )
    assert "\n" not in message
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # not one step trained


@pytest.mark.parametrize(
    "typed",
    [
        ["optimizer.lr=0.01"],
        ["optimizer=sgd"],
        ["scheduler=cosine"],
        ["+optimizer.momentum=0.9"],
        ["seed=3", "scheduler.gamma=0.5"],
    ],
)
def test_an_ignored_group_override_is_refused(make_cfg, typed):
    cfg = make_cfg("train", ["model=autoencoder"])
    with pytest.raises(ConfigError, match=r"changes nothing: model=src\.models\.autoencoder"):
        check_ignored_groups(cfg, typed)
    check_ignored_groups(make_cfg("train", ["model=mlp"]), typed)  # it takes both groups: fine
    check_ignored_groups(cfg, ["model.lr=0.01", "seed=3"])  # the module's own argument: fine


@pytest.mark.slow
def test_a_sweep_of_an_ignored_group_is_refused_before_training(tmp_path):
    proc = cli(
        ["-m", "model=autoencoder", "optimizer.lr=1e-3,1e-2", *SWEEP_FAST], tmp_path, ok=False
    )
    jobs = sweep_jobs(tmp_path)
    assert [results(j)["status"] for j in jobs] == ["failed"] * 2
    assert all("changes nothing" in results(j)["error"]["message"] for j in jobs)
    assert not any((j / "checkpoints").exists() for j in jobs)
    assert "optimizer.lr=0.001 changes nothing" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_autoencoder_under_ddp(tmp_path):
    """Two CPU processes: rank 0 alone makes the dry run, before it starts rank 1."""
    run = tmp_path / "run"
    cli(["model=autoencoder", "trainer=ddp_sim", *SWEEP_FAST, f"hydra.run.dir={run}"], tmp_path)
    done = results(run)
    assert done["status"] == "completed"
    assert any(k.startswith("test") and math.isfinite(v) for k, v in done["metrics"].items())
