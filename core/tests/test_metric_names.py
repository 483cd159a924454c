"""How a logged metric's name is read (`core/expkit/utils/metric_names.py`): any module's naming works."""

import pytest

from expkit.utils.metric_names import base_name, epoch_values, find, is_metric_column, stage_of


@pytest.mark.parametrize(
    ("name", "stage", "base"),
    [
        ("val/loss", "val", "loss"),
        ("val_loss", "val", "loss"),
        ("loss/val", "val", "loss"),
        ("train/g_loss_step", "train", "g_loss"),
        ("train_loss_epoch", "train", "loss"),
        ("test/acc", "test", "acc"),
        ("validation_accuracy", "val", "accuracy"),
        ("d_loss", None, "d_loss"),
        ("hp_metric", None, "hp_metric"),
        ("optimizer.lr", None, "optimizer.lr"),
        ("data.val_size", None, "data.val_size"),
    ],
)
def test_stage_and_base_name(name, stage, base):
    assert stage_of(name) == stage and base_name(name) == base


def test_a_metric_logged_on_step_and_epoch_is_kept_once_by_its_epoch_value():
    logged = {"train/loss": 1.0, "train/loss_step": 2.0, "train/loss_epoch": 1.0, "lr-Adam": 0.1}
    assert epoch_values(logged) == {"train/loss": 1.0}
    assert epoch_values({"x_epoch": 3.0, "x_step": 4.0}) == {"x": 3.0}
    assert epoch_values({"n_step": 5.0}) == {"n_step": 5.0}  # a name that merely ends in _step


def test_either_spelling_finds_the_metric():
    assert find("val_loss_epoch", ["val_loss"]) == "val_loss"
    assert find("val_loss", ["val_loss_epoch"]) == "val_loss_epoch"
    assert find("val/acc", ["val_acc"]) is None and find(None, ["x"]) is None


def test_metric_columns_of_a_table_of_runs():
    assert all(map(is_metric_column, ["val/acc_best", "test_loss", "loss/val"]))
    assert not any(map(is_metric_column, ["optimizer.lr", "status", "wall_time_s", "run_dir"]))
