"""Train, eval and the trainer, in-process, on the default example run: overrides on top of a
checkpoint, continuing from a checkpoint, seeding, the profiler."""

import csv
import json
from pathlib import Path

import pytest

from helpers import FAST, compose_config
from src.eval import evaluate
from src.train import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short digits run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("trained") / "run"
    metrics = train(compose_config("train", out, [*FAST, "trainer.max_epochs=6"]))
    return None, metrics, out


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
