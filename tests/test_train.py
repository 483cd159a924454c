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


@pytest.mark.slow  # a fresh Python that imports torch (~3 s)
def test_docs_net_pt_snippet_runs_with_torch_alone(trained_run, make_cfg, tmp_path):
    """The docs' `net.pt` lines, on an export of the example run, in a fresh Python that never
    imports Lightning or Hydra."""
    from src.export import export
    from tests.doc_commands import python_snippet
    from tests.helpers import run_cli

    _, _, out = trained_run
    best = json.loads((out / "results.json").read_text())["best_model_path"]
    export(make_cfg("export", [f"ckpt_path={best}", "extras.print_config=false"]))
    exported = next(p.parent for p in tmp_path.rglob("net.pt"))
    snippet = python_snippet("net.pt").replace("<export_dir>", str(exported))
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 6
    check = snippet + (
        "\nimport sys\n"
        "assert 'pytorch_lightning' not in sys.modules and 'hydra' not in sys.modules\n"
        "assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 1e-5\n"
        "print('ok')\n"
    )
    result = run_cli(["-c", check])
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
