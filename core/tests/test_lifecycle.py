"""The run's own callbacks installed as one `RunLifecycle`: the same checkpoints, the same order,
and no call for a per-batch hook that no callback uses."""

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

import expkit.run.build
from expkit.callbacks.finite_loss import StopOnNonFiniteLoss
from expkit.callbacks.history import History
from expkit.callbacks.lifecycle import (
    BATCH_HOOKS,
    RunLifecycle,
    each_callback,
    install_lifecycle,
    overrides,
)
from expkit.callbacks.model_summary import CompactModelSummary
from expkit.callbacks.restored_state import RestoredStateGuard
from expkit.callbacks.rng_state import RngStateInCheckpoint
from expkit.checkpoints.run_config import RunConfigInCheckpoint
from expkit.errors import ConfigError
from helpers import FAST, compose_config, fault
from src.train import train

#: dropout and augmentation: a resume reproduces them only with the RNG states restored
RANDOM = ["model.net.dropout=0.3", "data.augment=true"]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    for row in rows:  # wall-clock columns differ between any two runs
        row.pop("epoch_time_s")
        row.pop("train_time_s")
    return rows


def _callback_states(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["callbacks"]


def _separate(callbacks: list[pl.Callback]) -> list[pl.Callback]:
    """What `build_trainer` did before the lifecycle: every callback on its own."""
    return list(callbacks)


@pytest.mark.parametrize(
    "writer_merged, reader_merged",
    [(False, True), (True, False)],
    ids=["written-separate-resumed-merged", "written-merged-resumed-separate"],
)
def test_a_checkpoint_resumes_whether_or_not_the_callbacks_were_merged(
    tmp_path, monkeypatch, writer_merged, reader_merged
):
    """A run that died after epoch 0, resumed: the same numbers, history rows and best score as an
    uninterrupted run, whichever way each half installed the callbacks (the states keep their
    keys: `History`, `RngStateInCheckpoint`, ...)."""
    common = [*FAST, *RANDOM]  # 2 epochs; the first run dies when the second starts
    reference = train(compose_config("train", tmp_path / "ref", common))
    run = tmp_path / "run"
    dying = [*common, "~callbacks.interrupt_checkpoint", *fault("RaiseAt", epoch=1)]
    if not writer_merged:
        monkeypatch.setattr(expkit.run.build, "install_lifecycle", _separate)
    with pytest.raises(RuntimeError, match="injected failure"):
        train(compose_config("train", run, dying))
    monkeypatch.undo()
    written = _callback_states(run / "checkpoints" / "last.ckpt")
    assert {"History", "RngStateInCheckpoint"} <= set(written)
    assert "RunLifecycle" not in written
    if not reader_merged:
        monkeypatch.setattr(expkit.run.build, "install_lifecycle", _separate)
    resumed = train(compose_config("train", run, [*common, f"resume={run}"]))
    assert resumed == reference
    assert _rows(run) == _rows(tmp_path / "ref")
    assert set(_callback_states(run / "checkpoints" / "last.ckpt")) == set(
        _callback_states(tmp_path / "ref" / "checkpoints" / "last.ckpt")
    )


def test_a_run_installs_its_own_callbacks_as_one_in_the_place_of_the_first(make_cfg):
    trainer = expkit.run.build.build_trainer(make_cfg("train", FAST), store_config=True)
    (lifecycle,) = [c for c in trainer.callbacks if isinstance(c, RunLifecycle)]
    assert [type(p) for p in lifecycle.parts] == [
        CompactModelSummary,
        History,
        RngStateInCheckpoint,
        StopOnNonFiniteLoss,
        RestoredStateGuard,
        RunConfigInCheckpoint,
    ]
    names = [type(c).__name__ for c in trainer.callbacks]
    # model_summary's place: after lr_monitor (FAST drops the progress bar)
    assert names.index("RunLifecycle") == names.index("LearningRateMonitor") + 1
    assert not any(isinstance(c, History) for c in trainer.callbacks)
    assert any(isinstance(c, History) for c in each_callback(trainer.callbacks))


def test_lightning_calls_no_per_batch_hook_that_does_nothing(make_cfg):
    """Per batch, Lightning calls a hook of a callback only where its class overrides it; the
    lifecycle's hook is the one part's own method, or a loop over the parts that override it."""
    with_bar = [o for o in FAST if o != "~callbacks.rich_progress_bar"]
    trainer = expkit.run.build.build_trainer(make_cfg("train", with_bar), store_config=True)
    called = {
        (type(c).__name__, hook)
        for c in trainer.callbacks
        for hook in BATCH_HOOKS
        if callable(getattr(c, hook))
    }
    per_training_step = {
        h for h in BATCH_HOOKS if not h.startswith(("on_val", "on_test", "on_pred"))
    }
    assert {(name, h) for name, h in called if h in per_training_step} == {
        ("LearningRateMonitor", "on_train_batch_start"),
        ("ModelCheckpoint", "on_train_batch_end"),
        ("ThrottledRichProgressBar", "on_train_batch_end"),
        ("RunLifecycle", "on_train_batch_end"),
    }
    assert all(
        overrides(c, h)
        for c in trainer.callbacks
        if not isinstance(c, RunLifecycle)
        for h in BATCH_HOOKS
        if callable(getattr(c, h))
    )
    (lifecycle,) = [c for c in trainer.callbacks if isinstance(c, RunLifecycle)]
    history = next(p for p in lifecycle.parts if isinstance(p, History))
    assert lifecycle.on_fit_end == history.on_fit_end  # the only part with on_fit_end
    assert lifecycle.on_before_backward is None


def test_every_part_that_overrides_a_hook_is_called_in_order():
    calls: list[str] = []

    class Part(History):
        def __init__(self, name: str) -> None:
            super().__init__(output_dir=".", plot=False)
            self.name = name

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            calls.append(self.name)

        @property
        def state_key(self) -> str:
            return self.name

    first, second = Part("a"), Part("b")
    other = ModelCheckpoint(dirpath=".")
    callbacks = install_lifecycle([other, first, RngStateInCheckpoint(), second])
    assert [type(c) for c in callbacks] == [ModelCheckpoint, RunLifecycle]
    callbacks[1].on_train_batch_end(None, None, None, None, 0)
    assert calls == ["a", "b"]
    assert callable(other.on_train_batch_end) and other.on_before_zero_grad is None


def test_two_parts_with_state_under_one_key_are_refused(make_cfg):
    twice = [
        *FAST,
        "+callbacks.h2._target_=expkit.callbacks.history.History",
        "+callbacks.h2.output_dir=.",
    ]
    with pytest.raises(ConfigError, match=r"same state_key \['History'\]"):
        train(make_cfg("train", twice))
    with pytest.raises(ConfigError, match=r"same state_key \['History'\]"):
        RunLifecycle([History(output_dir="."), History(output_dir=".")])


def test_the_lifecycle_survives_pickling_and_deepcopy_with_its_parts():
    """Strategies that spawn processes pickle the trainer's callbacks: each copy calls its own
    parts."""
    import copy
    import pickle

    lifecycle = RunLifecycle([History(output_dir=".", plot=False), StopOnNonFiniteLoss()])
    for clone in (pickle.loads(pickle.dumps(lifecycle)), copy.deepcopy(lifecycle)):
        history, guard = clone.parts
        assert clone.on_train_batch_end.hooks == [
            history.on_train_batch_end,
            guard.on_train_batch_end,
        ]
        assert clone.on_train_batch_end.hooks[0].__self__ is history
