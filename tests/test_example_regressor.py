"""The regressor example (model=regressor): what it logs, the refusal of a model for the other
task, and (with the CSV table example) a regression trained end to end on scikit-learn's diabetes
table. A generated project without the regressor has none of this file."""

import pytest

from expkit.errors import ConfigError
from src.models.regressor import Regressor
from src.train import train
from tests.helpers import FAST


def test_the_regressor_logs_what_it_declares():
    assert set(Regressor.LOGGED_METRICS) == {
        *(f"{s}/{m}" for s in ("train", "val", "test") for m in ("loss", "mse", "mae")),
        "val/r2",
        "test/r2",
        "val/mse_best",
    }


# % if data_csv
def test_regression_trains_end_to_end_on_the_bundled_table(make_cfg):
    import torch

    cfg = make_cfg("train", [*FAST, "experiment=diabetes_regression", "trainer.max_epochs=25"])
    metrics = train(cfg)
    assert {"test/mse", "test/mae", "test/r2", "val/mse_best"} <= set(metrics)
    assert metrics["test/r2"] > 0.2  # ordinary least squares reaches ~0.45 on this table
    ckpt = torch.load(metrics_best_ckpt(cfg), map_location="cpu", weights_only=True)
    stats = ckpt["TableDataModule"]["fitted"]["target_stats"]
    assert ckpt["state_dict"]["target_mean"] == pytest.approx(stats[0])  # units travel with it


def metrics_best_ckpt(cfg) -> str:
    import json
    from pathlib import Path

    return json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["best_model_path"]


# % endif
CLASSIFY = ["monitor.metric=val/acc", "monitor.mode=max", "optimized_metric=val/acc"]
REGRESS = ["monitor.metric=val/mse", "monitor.mode=min", "optimized_metric=val/mse"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # % if data_csv
        (["experiment=diabetes_regression", "model=mlp", *CLASSIFY], "use model=regressor"),
        # % endif
        (["model=regressor", *REGRESS], "predicts one target, but data.num_classes=10"),
    ],
)
def test_a_model_for_the_other_task_is_refused(make_cfg, overrides, message):
    cfg = make_cfg("train", [*FAST, *overrides, "trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
