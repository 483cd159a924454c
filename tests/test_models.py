"""The LightningModules: metrics declared once, the fast attribute path, regression end to end."""

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassF1Score

from src.models.classifier import Classifier
from src.models.nets.mlp import MLP


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
