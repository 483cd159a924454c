"""Bad inputs, non-finite losses and unsafe checkpoints: each fails early with one clear message.

Every case is listed, with what the user sees, in docs/faults.md.
"""

import math
import os
import pickle
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from expkit.callbacks.finite_loss import StopOnNonFiniteLoss, _Window
from expkit.errors import (
    CheckpointError,
    ConfigError,
    DatasetNotFoundError,
    NonFiniteLossError,
)
from expkit.run.cli import unknown_key_hints
from helpers import FAST, ROOT, compose_config, fault, results, run_cli
from src.eval import evaluate
from src.train import train


def assert_nothing_trained(run_dir: Path, error: Exception) -> None:
    """A rejected run leaves its config and a `failed` results.json, and nothing that looks trained."""
    run_dir = Path(run_dir)
    assert not (run_dir / "checkpoints").exists()
    assert not (run_dir / "history.csv").exists()
    assert not (run_dir / "csv").exists() and not (run_dir / "tensorboard").exists()
    outcome = results(run_dir)
    assert outcome["status"] == "failed" and outcome["metrics"] == {}
    assert outcome["error"]["message"] == str(error)


def cli(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_cli([str(ROOT / "src" / script), *args], cwd=cwd, timeout=300)


# ---- bad inputs rejected by Hydra, through the real command line ---------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("model=foo", ["Could not find 'model/foo'", "Available options in 'model'", "mlp"]),
        ("experiment=nope", ["Could not find 'experiment/nope'", "digits_cnn"]),
        (
            "trainer.max_epoch=3",
            ["trainer.max_epoch=3", "Did you mean trainer.max_epochs?", "max_steps"],
        ),
        ("data.batch_size=0", ["data.batch_size=0 is not allowed", "> 0"]),
    ],
    ids=["unknown-option", "unknown-experiment", "misspelled-key", "own-error"],
)
def test_command_line_rejects_bad_input_with_one_message(tmp_path, arg, expected):
    run = tmp_path / "run"
    proc = cli("train.py", [arg, f"hydra.run.dir={run}", "extras.print_config=false"], tmp_path)
    assert proc.returncode == 1
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr  # a message, not a stack trace
    if arg.startswith("data."):  # composed, then rejected by validation before any training
        assert_nothing_trained(run, ConfigError(results(run)["error"]["message"]))
    else:  # rejected while composing: no run directory at all
        assert not run.exists()


def test_misspelled_keys_get_the_allowed_keys_and_a_suggestion():
    hints = unknown_key_hints(
        "train", ["model=cnn", "model.net.chanels=[8]", "trainer.max_epochs=2", "seed=1"]
    )
    assert len(hints) == 1
    assert "Did you mean model.net.channels?" in hints[0] and "dropout" in hints[0]
    assert unknown_key_hints("train", ["model=cnn", "model.net.channels=[8]"]) == []


# ---- bad values, in-process ----------------------------------------------------------------------
def available_devices() -> tuple[str, int]:
    if torch.cuda.is_available():
        return "gpu", torch.cuda.device_count()
    return "cpu", len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity"
    ) else os.cpu_count()


KIND, DEVICES = available_devices()
BAD_VALUES = {
    "zero-batch-size": (["data.batch_size=0"], ["data.batch_size=0", "> 0"]),
    "negative-batch-size": (["data.batch_size=-8"], ["data.batch_size=-8", "> 0"]),
    "zero-lr": (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    "negative-lr": (["optimizer.lr=-0.001"], ["optimizer.lr=-0.001", "> 0"]),
    "zero-max-epochs": (["trainer.max_epochs=0"], ["trainer.max_epochs=0", "> 0", "-1"]),
    "negative-max-epochs": (["trainer.max_epochs=-5"], ["trainer.max_epochs=-5", "-1"]),
    "metric-never-logged": (
        ["monitor.metric=val/accuracy"],
        ["monitor.metric='val/accuracy'", "never logged", "val/acc,"],
    ),
    "missing-ckpt-path": (
        ["ckpt_path=nowhere/last.ckpt"],
        ["ckpt_path='nowhere/last.ckpt'", "does not exist"],
    ),
    "too-many-devices": (
        [f"trainer={KIND}", f"trainer.devices={DEVICES + 1}"],
        [f"trainer.devices={DEVICES + 1}", f"Allowed: 1..{DEVICES}"],
    ),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_fail_before_training(make_cfg, case):
    overrides, expected = BAD_VALUES[case]
    cfg = make_cfg("train", [*FAST, *overrides])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    for text in expected:
        assert text in str(info.value)
    assert_nothing_trained(cfg.paths.output_dir, info.value)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails at once, like a machine with no network."""

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (disabled by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_missing_dataset_without_network_fails_before_training(make_cfg, tmp_path, no_network):
    empty = tmp_path / "empty"
    cfg = make_cfg(
        "train",
        [*FAST, "data=mnist", f"paths.data_dir={empty}", f"paths.shared_data_dirs=[{empty}]"],
    )
    with pytest.raises(DatasetNotFoundError) as info:
        train(cfg)
    message = str(info.value)
    assert "mnist files are missing under" in message and "MNIST/raw" in message
    assert "train-images-idx3-ubyte" in message and "paths.data_dir=" in message
    assert "also looked in" in message
    assert_nothing_trained(cfg.paths.output_dir, info.value)


# ---- non-finite loss ---------------------------------------------------------------------------
def all_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize(
    ("injected", "expected"),
    [
        (
            fault("NanInputsAt", epoch=1, batch=3),
            "loss is nan at epoch 1, batch 3 (global step 25)",
        ),
        (fault("InfWeightAt", epoch=1, batch=20), "became NaN/inf by epoch 1"),
    ],
    ids=["nan-loss", "inf-weights-finite-loss"],
)
def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(make_cfg, injected, expected):
    cfg = make_cfg("train", [*FAST, "trainer.max_epochs=3", *injected])
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    run = Path(cfg.paths.output_dir)
    assert expected in str(info.value)
    assert f"Last good checkpoint: {run / 'checkpoints'}" in str(info.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_000.ckpt",
        "last.ckpt",
    ]
    assert all(
        all_finite(p) for p in (run / "checkpoints").iterdir()
    )  # no NaN weights, no NaN "best"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert results(run)["status"] == "failed"
    assert results(run)["error"]["type"] == "NonFiniteLossError"


def test_diverging_learning_rate_is_stopped_at_the_first_bad_step(make_cfg):
    cfg = make_cfg("train", [*FAST, "optimizer=sgd", "optimizer.lr=1e6"])
    with pytest.raises(NonFiniteLossError, match=r"at epoch 0, batch \d+ \(global step \d+\)"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_losses_on_an_accelerator_are_checked_in_one_sync_per_window():
    """The window logic: the first bad step of the window is named."""
    guard = StopOnNonFiniteLoss(check_every_n_steps=4)
    losses = [1.0, 2.0, math.inf, math.nan]
    guard._window = _Window(epoch=3, batch=0, global_step=100)
    guard._pending = [torch.tensor(v) for v in losses]

    class Trainer:
        checkpoint_callbacks = []

    with pytest.raises(
        NonFiniteLossError, match=r"loss is inf at epoch 3, batch 2 \(global step 102\)"
    ):
        guard.check_losses(Trainer())
    assert guard._pending == []


# ---- checkpoints -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    train(compose_config("train", out, [*FAST, "trainer.max_epochs=1", "test=false"]))
    return out / "checkpoints" / "last.ckpt"


class RunsCode:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a crafted pickle could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(params=["torch-zip", "plain-pickle"])
def crafted(request, tmp_path, trained):
    """A checkpoint that looks real (weights, run_config) but would run code when unpickled."""
    marker = tmp_path / "code-was-run"
    payload = torch.load(trained, map_location="cpu", weights_only=True)
    payload["extra"] = RunsCode(marker)
    path = tmp_path / "crafted.ckpt"
    if request.param == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path, marker


def test_eval_refuses_a_checkpoint_that_would_run_code(make_cfg, crafted):
    path, marker = crafted
    cfg = make_cfg("eval", [f"ckpt_path={path}", "extras.print_config=false"])
    with pytest.raises(CheckpointError, match="Refusing to load .* could run code"):
        evaluate(cfg)
    assert not marker.exists()
    assert results(cfg.paths.output_dir)["status"] == "failed"


def test_train_refuses_to_resume_from_a_checkpoint_that_would_run_code(make_cfg, crafted):
    path, marker = crafted
    cfg = make_cfg("train", [*FAST, f"ckpt_path={path}"])
    with pytest.raises(CheckpointError, match="Refusing to load"):
        train(cfg)
    assert not marker.exists()
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.slow
def test_eval_command_refuses_a_checkpoint_that_would_run_code(tmp_path, trained):
    marker = tmp_path / "code-was-run"
    payload = torch.load(trained, map_location="cpu", weights_only=True)
    payload["extra"] = RunsCode(marker)
    torch.save(payload, tmp_path / "crafted.ckpt")
    proc = cli(
        "eval.py",
        [f"ckpt_path={tmp_path / 'crafted.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"],
        tmp_path,
    )
    assert proc.returncode == 1
    assert "Refusing to load" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


def truncated(trained: Path, tmp_path: Path) -> Path:
    data = trained.read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    return path


def bare_state_dict(trained: Path, tmp_path: Path) -> Path:
    """What `torch.save(model.state_dict(), path)` in another project writes."""
    state = torch.load(trained, map_location="cpu", weights_only=True)["state_dict"]
    path = tmp_path / "bare.pt"
    torch.save({k.removeprefix("net."): v for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize(
    ("make", "task", "overrides", "expected"),
    [
        (truncated, "eval", [], "is not a readable torch checkpoint"),
        (truncated, "train", [], "is not a readable torch checkpoint"),
        (bare_state_dict, "eval", [], "carries no run config"),
        (bare_state_dict, "train", [], "is not a Lightning training checkpoint"),
        (None, "train", ["model=cnn"], "model.net here: CNN(channels=[32, 64, 128]"),
        (None, "eval", ["model=cnn"], "in the checkpoint: MLP(hidden_sizes=[64, 128, 64]"),
        (
            None,
            "train",
            ["model.net.hidden_sizes=[64,128,32]"],
            "of another shape (net.layers.7.weight: checkpoint [64, 128], model [32, 128]",
        ),
    ],
    ids=[
        "truncated-eval",
        "truncated-train",
        "bare-state-dict-eval",
        "bare-state-dict-train",
        "other-architecture-train",
        "other-architecture-eval",
        "other-shapes-train",
    ],
)
def test_unusable_checkpoints_get_a_clear_error(
    make_cfg, tmp_path, trained, make, task, overrides, expected
):
    path = make(trained, tmp_path) if make else trained
    args = [f"ckpt_path={path}", *overrides]
    if task == "train":
        cfg = make_cfg("train", [*FAST, *args])
        with pytest.raises(CheckpointError) as info:
            train(cfg)
    else:
        cfg = make_cfg("eval", [*args, "extras.print_config=false"])
        with pytest.raises(CheckpointError) as info:
            evaluate(cfg, overrides=args)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_no_code_path_turns_safe_loading_off():
    """`weights_only=True` everywhere: nothing in src/ or configs/ loads unsafely or allow-lists globals."""
    unsafe = (
        "weights_only=False",
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
        "add_safe_globals",
        "safe_globals(",
    )
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "configs").rglob("*.yaml")]:
        text = path.read_text()
        assert not any(u in text for u in unsafe), path
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_copied_checkpoint_still_loads(tmp_path, trained, make_cfg):
    """The positive control for the cases above: the same file, intact, evaluates."""
    path = tmp_path / "copy.ckpt"
    shutil.copy(trained, path)
    assert (
        0.0
        <= evaluate(make_cfg("eval", [f"ckpt_path={path}", "extras.print_config=false"]))[
            "test/acc"
        ]
        <= 1.0
    )
