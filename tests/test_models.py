"""The LightningModules: metrics declared once, the fast attribute path, regression end to end."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassF1Score

from expkit.utils.errors import ConfigError
from src.models.classifier import Classifier
from src.models.nets.mlp import MLP
from src.models.regressor import Regressor
from src.train import train
from tests.helpers import FAST


def _classifier(cls=Classifier, num_classes: int = 3) -> Classifier:
    net = MLP([4], num_classes, hidden_sizes=[8])
    return cls(net=net, optimizer=lambda params: torch.optim.Adam(params), num_classes=num_classes)


def test_logged_metrics_are_derived_from_the_declarations():
    assert Classifier.LOGGED_METRICS == (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
    )
    assert set(Regressor.LOGGED_METRICS) == {
        *(f"{s}/{m}" for s in ("train", "val", "test") for m in ("loss", "mse", "mae")),
        "val/r2",
        "test/r2",
        "val/mse_best",
    }


class WithF1(Classifier):
    EVAL_METRICS = {
        **Classifier.EVAL_METRICS,
        "f1": lambda m: MulticlassF1Score(m.hparams.num_classes),  # the one added line
    }


def test_a_metric_is_one_declared_line(tmp_path):
    """The added metric is logged for val and test, and is a key `monitor` may name."""
    assert {"val/f1", "test/f1"} <= set(WithF1.LOGGED_METRICS)
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    model = _classifier(WithF1)
    trainer.fit(model, loader, loader)
    logged = set(trainer.callback_metrics)
    trainer.test(model, loader, verbose=False)
    assert set(WithF1.LOGGED_METRICS) == logged | set(trainer.callback_metrics)


def test_fast_setattr_keeps_module_semantics():
    model = _classifier()
    model._current_fx_name = "training_step"  # what Lightning sets around every hook
    assert model._current_fx_name == "training_step" and "_current_fx_name" in model.__dict__
    model.extra = nn.Linear(2, 2)  # submodules and parameters are still registered
    model.scale = nn.Parameter(torch.ones(1))
    assert "extra" in dict(model.named_children()) and "scale" in dict(model.named_parameters())
    model.scale = None  # assigning None to a parameter keeps it a (now empty) parameter slot
    assert "scale" in model._parameters


def test_regression_trains_end_to_end_on_the_bundled_table(make_cfg):
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


CLASSIFY = ["monitor.metric=val/acc", "monitor.mode=max", "optimized_metric=val/acc"]
REGRESS = ["monitor.metric=val/mse", "monitor.mode=min", "optimized_metric=val/mse"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=diabetes_regression", "model=mlp", *CLASSIFY], "use model=regressor"),
        (["model=regressor", *REGRESS], "predicts one target, but data.num_classes=10"),
    ],
)
def test_a_model_for_the_other_task_is_refused(make_cfg, overrides, message):
    cfg = make_cfg("train", [*FAST, *overrides, "trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
