"""The task functions end to end, in-process: train → best-checkpoint test → eval, resume, artifacts."""

import csv
import json
from pathlib import Path

import pytest
import torch

from src.eval import evaluate
from src.train import train
from tests.helpers import FAST, PLOT


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short digits run shared by the tests that only read its outputs."""
    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = compose_config(
        "train", out, [*FAST, PLOT, "trainer.max_epochs=6", "logger=[tensorboard,csv]"]
    )
    metrics = train(cfg)
    return cfg, metrics, out


def test_default_run_reaches_high_accuracy(trained_run):
    _, metrics, _ = trained_run
    assert metrics["test/acc"] >= 0.93
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-6


def test_run_directory_holds_every_artifact(trained_run):
    _, metrics, out = trained_run
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["metrics"]["test/acc"] == metrics["test/acc"]
    assert {"test/acc", "test/loss", "val/acc", "val/acc_best", "train/loss"} <= set(
        results["metrics"]
    )
    assert results["wall_time_s"] > 0
    best = Path(results["best_model_path"])
    assert best.is_file() and best.parent == out / "checkpoints"
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "config.yaml").is_file() and (out / "curves.png").stat().st_size > 1000
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows)))
    assert {"train/loss", "val/loss", "val/acc", "lr", "epoch_time_s"} <= set(rows[0])
    assert (out / "csv" / "metrics.csv").is_file() and any((out / "tensorboard").glob("events.*"))


def test_checkpoints_load_with_weights_only(trained_run):
    _, _, out = trained_run
    for ckpt in (out / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert checkpoint["run_config"]["data"]["_target_"].endswith("DigitsDataModule")


def test_eval_reproduces_the_run_test_metrics(trained_run, make_cfg):
    _, metrics, out = trained_run
    best = json.loads((out / "results.json").read_text())["best_model_path"]
    cfg = make_cfg("eval", [f"ckpt_path={best}", "extras.print_config=false"])
    eval_metrics = evaluate(cfg)
    assert eval_metrics["test/acc"] == metrics["test/acc"]  # identical float, not approximately
    assert (
        json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["metrics"]
        == eval_metrics
    )


def test_eval_applies_overrides_on_top_of_the_checkpoint(trained_run, make_cfg):
    _, metrics, out = trained_run
    best = json.loads((out / "results.json").read_text())["best_model_path"]
    overrides = [f"ckpt_path={best}", "data.eval_batch_size=7", "extras.print_config=false"]
    cfg = make_cfg("eval", overrides)
    assert evaluate(cfg, overrides=overrides)["test/acc"] == pytest.approx(metrics["test/acc"])
    saved = (Path(cfg.paths.output_dir) / "config.yaml").read_text()
    assert "eval_batch_size: 7" in saved


def test_resume_from_last_checkpoint_continues_training(trained_run, make_cfg):
    _, _, out = trained_run
    cfg = make_cfg(
        "train", [*FAST, "trainer.max_epochs=8", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"]
    )
    train(cfg)
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(8))  # epochs 0-5 carried over, 6-7 trained


@pytest.mark.parametrize("model", ["cnn", pytest.param("resnet", marks=pytest.mark.slow)])
def test_other_models_train(make_cfg, model):
    cfg = make_cfg(
        "train",
        [
            *FAST,
            f"model={model}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
        ],
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_seeded_runs_are_identical(make_cfg):
    first = train(make_cfg("train", [*FAST, "seed=3"]))
    second = train(make_cfg("train", [*FAST, "seed=3"]))
    assert first["test/acc"] == second["test/acc"] and first["val/loss"] == second["val/loss"]


def test_profiler_report_lands_in_the_run_directory(make_cfg):
    cfg = make_cfg("train", [*FAST, "debug=profiler", "trainer.limit_train_batches=3"])
    train(cfg)
    reports = list(Path(cfg.paths.output_dir).glob("*profile*.txt"))
    assert reports and "Action" in reports[0].read_text()


def test_without_a_chosen_profiler_the_trainer_gets_the_free_one(make_cfg):
    from pytorch_lightning.profilers import SimpleProfiler

    from expkit.run.build import build_trainer
    from expkit.run.profiler import NoOpProfiler

    trainer = build_trainer(make_cfg("train", FAST))
    assert isinstance(trainer.profiler, NoOpProfiler)
    with trainer.profiler.profile("step") as entered:  # a usable context, shared between calls
        assert entered is None
    assert trainer.profiler.profile("a") is trainer.profiler.profile("b")
    chosen = build_trainer(make_cfg("train", [*FAST, "trainer.profiler=simple"]))
    assert isinstance(chosen.profiler, SimpleProfiler)
