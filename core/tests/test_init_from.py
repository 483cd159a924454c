"""Fine-tuning from a checkpoint (`init_from=<ckpt>`): weights only, a new run, clear about what it skipped.

One 1-epoch digits run provides the checkpoint. `load_initial_weights` is checked directly (the
weights equal the checkpoint's, a changed head stays new, a subset of layers, export's net.pt),
then through `train(cfg)` with a callback that snapshots the weights when fit starts, and every bad
input (missing, garbage, code-carrying, foreign file, bad prefix, with ckpt_path) fails in one line
before training.
"""

import json
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from expkit.checkpoints.init_from import load_initial_weights
from expkit.errors import CheckpointError, ConfigError
from helpers import FAST, compose_config, run_cli
from src.train import train

ONE_EPOCH = [*FAST, "trainer.max_epochs=1", "logger=none"]
HEAD = ["net.layers.10.weight", "net.layers.10.bias"]  # MLP's last Linear (the classifier)


class WeightsAtFitStart(pl.Callback):
    """Saves the model's state_dict when fit starts: after init_from, before any step."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({k: v.clone() for k, v in pl_module.state_dict().items()}, self.path)


@pytest.fixture(scope="module")
def source(tmp_path_factory, cache_dir) -> dict:
    """A 1-epoch digits MLP run: its last checkpoint and that checkpoint's weights."""
    out = tmp_path_factory.mktemp("init_source") / "run"
    train(compose_config("train", out, ONE_EPOCH, cache_dir))
    ckpt = out / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {"ckpt": ckpt, "state": state, "dir": out}


def _model(make_cfg, overrides=()):
    return instantiate(make_cfg("train", list(overrides)).model, _convert_="all")


def _net_keys(state: dict) -> list[str]:
    return [k for k in state if k.startswith("net.")]


# ---- load_initial_weights, directly ----------------------------------------------------------
def test_same_model_gets_every_weight_of_the_checkpoint(source, make_cfg):
    model = _model(make_cfg)
    report = load_initial_weights(model, source["ckpt"])
    assert report.loaded == _net_keys(source["state"]) and not report.reshaped
    for key in report.loaded:
        assert torch.equal(model.state_dict()[key], source["state"][key]), key
    # metric states are the old run's: never copied
    assert not any(k.startswith(("val_", "test_")) for k in report.loaded)
    assert "val_acc_best.max_value" in source["state"] and not report.not_loaded
    assert not torch.equal(
        model.state_dict()["val_acc_best.max_value"], source["state"]["val_acc_best.max_value"]
    )


def test_another_class_count_leaves_the_head_new_and_names_both_shapes(source, make_cfg, caplog):
    model = _model(make_cfg, ["data.num_classes=5"])
    fresh_head = {k: model.state_dict()[k].clone() for k in HEAD}
    with caplog.at_level(logging.INFO, logger="expkit.checkpoints.init_from"):
        report = load_initial_weights(model, source["ckpt"])
    assert report.reshaped == [("net.layers.10.weight", [10, 64], [5, 64])] + [
        ("net.layers.10.bias", [10], [5])
    ]
    assert report.loaded == [k for k in _net_keys(source["state"]) if k not in HEAD]
    for key in report.loaded:
        assert torch.equal(model.state_dict()[key], source["state"][key]), key
    for key in HEAD:
        assert torch.equal(model.state_dict()[key], fresh_head[key]), key
    assert "net.layers.10.weight (checkpoint [10, 64], model [5, 64])" in caplog.text
    assert "left newly initialised" in caplog.text


def test_a_reshaped_weight_keeps_its_whole_layer_new(source, make_cfg):
    """hidden_sizes [..., 32]: the head's weight changes shape but its bias does not; the bias
    must stay with its weight (a half-loaded layer is neither the old one nor a fresh one)."""
    model = _model(make_cfg, ["model.net.hidden_sizes=[64,128,32]"])
    report = load_initial_weights(model, source["ckpt"])
    reshaped = [k for k, *_ in report.reshaped]
    assert "net.layers.10.weight" in reshaped and "net.layers.7.weight" in reshaped
    assert "net.layers.10.bias" in report.skipped_with_module
    assert "net.layers.8.num_batches_tracked" in report.skipped_with_module
    assert set(report.loaded) == {
        k for k in _net_keys(source["state"]) if k.split(".")[2] in ("1", "2", "4", "5")
    }


def test_a_subset_of_layers_by_prefix(source, make_cfg):
    model = _model(make_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_initial_weights(model, source["ckpt"], keys=["net.layers.1", "net.layers.4"])
    assert report.loaded == [
        "net.layers.1.weight",
        "net.layers.1.bias",
        "net.layers.4.weight",
        "net.layers.4.bias",
    ]
    after = model.state_dict()
    for key in after:
        expected = source["state"][key] if key in report.loaded else before[key]
        assert torch.equal(after[key], expected), key


def test_a_plain_network_state_dict_such_as_export_net_pt(source, make_cfg, tmp_path):
    net_only = {
        k.removeprefix("net."): v for k, v in source["state"].items() if k.startswith("net.")
    }
    path = tmp_path / "net.pt"
    torch.save(net_only, path)
    model = _model(make_cfg)
    report = load_initial_weights(model, path)
    assert report.loaded == _net_keys(source["state"])
    assert torch.equal(model.net.layers[1].weight, source["state"]["net.layers.1.weight"])


# ---- through train(cfg) ----------------------------------------------------------------------
def _fine_tune(make_cfg, source, tmp_path, overrides):
    snapshot = tmp_path / "at_fit_start.pt"
    cfg = make_cfg(
        "train",
        [
            *ONE_EPOCH,
            f"init_from={source['ckpt']}",
            f"+callbacks.snapshot._target_={__name__}.WeightsAtFitStart",
            f"+callbacks.snapshot.path={snapshot}",
            *overrides,
        ],
    )
    train(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    return results, torch.load(snapshot, weights_only=True), out


def test_fine_tune_starts_from_the_checkpoint_weights_with_a_new_optimizer(
    source, make_cfg, tmp_path
):
    results, at_start, out = _fine_tune(make_cfg, source, tmp_path, ["optimizer=sgd"])
    assert results["status"] == "completed" and results["resumed_from"] is None
    assert results["init_from"]["loaded"] == _net_keys(source["state"])
    for key in results["init_from"]["loaded"]:
        assert torch.equal(at_start[key], source["state"][key]), key
    # a new run: its own directory, epoch counter and optimizer (SGD, not the checkpoint's Adam)
    assert out != source["dir"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    optimizer_state = str(ckpt["optimizer_states"][0])
    assert ckpt["epoch"] == 0 and "momentum" in optimizer_state and "exp_avg" not in optimizer_state
    assert ckpt["run_config"]["init_from"] == str(source["ckpt"])


def test_fine_tune_with_a_changed_head_reports_the_skipped_keys(source, make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="expkit.checkpoints.init_from"):
        results, at_start, _ = _fine_tune(
            make_cfg, source, tmp_path, ["model.net.hidden_sizes=[64,128,32]"]
        )
    report = results["init_from"]
    assert ["net.layers.10.weight", [10, 64], [10, 32]] in report["reshaped"]
    assert "net.layers.10.weight (checkpoint [10, 64], model [10, 32])" in caplog.text
    for key in report["loaded"]:
        assert torch.equal(at_start[key], source["state"][key]), key
    assert tuple(at_start["net.layers.10.weight"].shape) == (10, 32)


def test_a_rerun_in_a_directory_with_checkpoints_continues_it_instead(source, make_cfg, tmp_path):
    """resume=<run_dir> of a fine-tuning run keeps its own trained weights (not init_from's)."""
    results, _, out = _fine_tune(make_cfg, source, tmp_path, [])
    cfg = compose_config(
        "train", out, [*ONE_EPOCH, "trainer.max_epochs=2", f"init_from={source['ckpt']}"]
    )
    train(cfg)
    again = json.loads((out / "results.json").read_text())
    assert again["resumed_from"] and "init_from" not in again


# ---- bad input: one line, before training ----------------------------------------------------
class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _bad_files(tmp_path: Path, source: dict) -> dict[str, Path]:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(source["ckpt"].read_bytes()[:5000])
    code = tmp_path / "code.ckpt"
    torch.save({"state_dict": {"net.x": Payload()}}, code)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(3)}}, foreign)
    empty = tmp_path / "empty.ckpt"
    torch.save({"epoch": 3}, empty)
    return {
        "garbage": garbage,
        "truncated": truncated,
        "code": code,
        "foreign": foreign,
        "empty": empty,
    }


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing", ConfigError, "does not exist"),
        ("directory", ConfigError, "is a directory"),
        ("garbage", CheckpointError, "not a readable torch checkpoint"),
        ("truncated", CheckpointError, "not a readable torch checkpoint"),
        ("code", CheckpointError, "could run code"),
        ("foreign", CheckpointError, "none of its 1 selected weight(s) fit"),
        ("empty", CheckpointError, "holds no weights"),
        ("bad_prefix", ConfigError, "'net.nope' selects nothing"),
        ("bad_keys_type", ConfigError, "init_from_keys=5 is not allowed"),
        ("keys_without_init_from", ConfigError, "init_from_keys=['net.layers.1'] is set but"),
        ("with_ckpt_path", ConfigError, "are both set"),
    ],
)
def test_bad_init_from_fails_in_one_line_before_training(
    source, make_cfg, tmp_path, case, error, message, capsys
):
    files = _bad_files(tmp_path, source)
    init = {
        "missing": tmp_path / "nope.ckpt",
        "directory": tmp_path,
        "bad_prefix": source["ckpt"],
        "bad_keys_type": source["ckpt"],
        "with_ckpt_path": source["ckpt"],
    }.get(case) or files.get(case)
    overrides = [*ONE_EPOCH, f"init_from={init}"]
    if case == "bad_prefix":
        overrides.append("init_from_keys=[net.nope]")
    if case == "bad_keys_type":
        overrides.append("init_from_keys=5")
    if case == "keys_without_init_from":
        overrides = [*ONE_EPOCH, "init_from_keys=[net.layers.1]"]
    if case == "with_ckpt_path":
        overrides.append(f"ckpt_path={source['ckpt']}")
    cfg = make_cfg("train", overrides)
    with pytest.raises(error) as err:
        train(cfg)
    text = str(err.value)
    assert message in text and "Allowed" in text and "\n" not in text
    assert "this must never run" not in capsys.readouterr().out
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert (
        results["status"] == "failed" and not (Path(cfg.paths.output_dir) / "checkpoints").exists()
    )


@pytest.mark.slow  # a new Python process (~7 s): the one-line error of the command line
def test_missing_init_from_on_the_command_line_is_one_line(tmp_path):
    result = run_cli(
        ["src/train.py", f"init_from={tmp_path}/nope.ckpt", f"paths.log_dir={tmp_path}"]
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"init_from='{tmp_path}/nope.ckpt' does not exist" in result.stderr
