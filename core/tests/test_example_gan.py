"""The GAN example (manual optimization, two optimizers): the checks made before its first step,
the dry run that finds what it logs, and its NaN guard. A generated project without the example
has none of this file."""

import math
from pathlib import Path

import pytest

from expkit.errors import ConfigError, NonFiniteLossError
from helpers import FAST, compose_config, results
from src.models.gan import GAN
from src.train import train
from test_any_module import SWEEP_FAST, cli


def test_an_optimized_metric_the_module_never_logs_is_refused_before_training(make_cfg):
    cfg = make_cfg("train", [*FAST, "model=gan", "optimized_metric=val/acc_best"])
    with pytest.raises(
        ConfigError, match="optimized_metric='val/acc_best'.*optimized_metric=val/gap"
    ):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_the_dry_run_leaves_the_run_unchanged(tmp_path, cache_dir):
    """The dry run that finds what a module logs puts the random state back: with it, the run's
    numbers are those of a run that declares its metrics (and makes no dry run)."""
    common = [*FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "model=gan"]
    common += ["data.augment=true"]
    checked = train(compose_config("train", tmp_path / "a", common, cache_dir))
    declared = [*common, "model._target_=test_example_gan.DeclaredGAN"]
    unchecked = train(compose_config("train", tmp_path / "b", declared, cache_dir))
    assert checked == unchecked


class DeclaredGAN(GAN):
    """The example GAN, declaring what it logs (so no dry run is made)."""

    LOGGED_METRICS = ("train/g_loss", "train/d_loss", "val/gap", "test/gap")


def test_manual_optimization_nan_is_caught_and_blames_the_modules_own_lr(make_cfg):
    cfg = make_cfg("train", [*FAST, "model=gan", "debug=nan_loss"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    message = str(err.value)
    assert "by epoch 0" in message and "model.lr" in message and "optimizer.lr" not in message
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))


@pytest.mark.slow
def test_the_gan_under_ddp(tmp_path):
    """Two CPU processes: rank 0 alone makes the dry run, before it starts rank 1."""
    run = tmp_path / "run"
    cli(
        [
            "model=gan",
            "trainer.strategy=ddp_find_unused_parameters_true",
            "trainer=ddp_sim",
            *SWEEP_FAST,
            f"hydra.run.dir={run}",
        ],
        tmp_path,
    )
    done = results(run)
    assert done["status"] == "completed"
    assert any(k.startswith("test") and math.isfinite(v) for k, v in done["metrics"].items())
