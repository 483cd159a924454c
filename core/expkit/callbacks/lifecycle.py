"""The run's own callbacks installed as one: `RunLifecycle`, which calls each part only where it acts.

Lightning calls every hook on every callback in its list, each through `getattr`, the callback's
`state_key` and a profiler context, whether the callback overrides the hook or not: six calls per
training step for each callback, most of them no-ops. The template's own concerns (history, NaN
guard, RNG state, model summary, restored-state guard, run config) each stay a small
`LifecyclePart` in a file of its own (and a plain `pl.Callback` that works alone too), but a run
installs them as the parts of a single `RunLifecycle`: per hook, it holds only the parts that
override it, and a hook no part overrides is not a callable at all, which Lightning skips without a
call. `skip_unused_batch_hooks` does the same for the per-batch hooks of every other callback.

Checkpoints keep their layout: each part's state is stored under its own `state_key` (`History`,
`RngStateInCheckpoint`), as when it was a callback of its own, so a checkpoint written before the
merge resumes into the merged callback, and one written after it resumes without it.

Order is kept too: the lifecycle takes the place of its first part in the callback list, parts are
called in the order they were configured in, every part's `on_load_checkpoint` (the restored-state
guard's clean-up) runs before any part loads its state, and every part's `state_dict` is taken
before any part's `on_save_checkpoint` (the NaN guard, which may refuse the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import deepcopy
from typing import Any

import pytorch_lightning as pl

from expkit.errors import ConfigError

#: hooks Lightning calls once per batch (through `_call_callback_hooks`, which skips a hook that is
#: not callable)
BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)

#: every hook Lightning calls through `_call_callback_hooks`; the checkpoint hooks (called directly,
#: always) and the state methods are `RunLifecycle`'s own methods
DISPATCHED_HOOKS = (
    *BATCH_HOOKS,
    "setup",
    "teardown",
    "on_fit_start",
    "on_fit_end",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_start",
    "on_train_end",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_validation_start",
    "on_validation_end",
    "on_validation_epoch_start",
    "on_validation_epoch_end",
    "on_test_start",
    "on_test_end",
    "on_test_epoch_start",
    "on_test_epoch_end",
    "on_predict_start",
    "on_predict_end",
    "on_predict_epoch_start",
    "on_predict_epoch_end",
    "on_exception",
)


class LifecyclePart(pl.Callback):
    """A callback that a run installs as a part of its `RunLifecycle` instead of on its own.

    For concerns that need nothing of Lightning but the hooks: not for a `Checkpoint`,
    `ProgressBar` or `EarlyStopping`, which Lightning finds, orders and calls by their type.
    """


def overrides(callback: pl.Callback, hook: str) -> bool:
    """Whether the callback's class does something in `hook` (the base class does nothing)."""
    return getattr(type(callback), hook, None) is not getattr(pl.Callback, hook)


class _InTurn:
    """The parts' methods for one hook, called in turn (a class, not a closure: a trainer's
    callbacks may be pickled or deep-copied)."""

    def __init__(self, hooks: list[Callable[..., Any]]) -> None:
        self.hooks = hooks

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        for hook in self.hooks:
            hook(*args, **kwargs)


def _in_turn(hooks: list[Callable[..., Any]]) -> Callable[..., Any] | None:
    """One callable for the parts' hooks: None for none (Lightning skips it), the part's own bound
    method for one (no call in between), else the parts' methods in turn."""
    if not hooks:
        return None
    return hooks[0] if len(hooks) == 1 else _InTurn(hooks)


class RunLifecycle(pl.Callback):
    """Lightning's one callback for all `parts`; see the module docstring."""

    def __init__(self, parts: Sequence[pl.Callback]) -> None:
        self.parts = list(parts)
        keys = [p.state_key for p in self.parts if overrides(p, "state_dict")]
        if len(keys) != len(set(keys)):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ConfigError(
                f"Two callbacks keep state under the same state_key {twice}: their checkpoint "
                "states would overwrite each other; allowed: one such callback per state_key."
            )
        for hook in DISPATCHED_HOOKS:
            setattr(
                self, hook, _in_turn([getattr(p, hook) for p in self.parts if overrides(p, hook)])
            )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = {p.state_key: p.state_dict() for p in self.parts}
        for part in self.parts:
            if overrides(part, "on_save_checkpoint"):
                part.on_save_checkpoint(trainer, pl_module, checkpoint)
        stored = checkpoint.setdefault("callbacks", {})
        stored.update({key: state for key, state in states.items() if state})

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for part in self.parts:
            if overrides(part, "on_load_checkpoint"):
                part.on_load_checkpoint(trainer, pl_module, checkpoint)
        states = checkpoint.get("callbacks")
        if not isinstance(states, dict):
            return
        for part in self.parts:  # as Lightning restores a callback of its own
            state = states.get(part.state_key, states.get(part._legacy_state_key))
            if state:
                part.load_state_dict(deepcopy(state))


def each_callback(callbacks: Iterable[pl.Callback]) -> Iterator[pl.Callback]:
    """Every callback in `callbacks`, the parts of a `RunLifecycle` in its place."""
    for callback in callbacks:
        if isinstance(callback, RunLifecycle):
            yield from callback.parts
        else:
            yield callback


def skip_unused_batch_hooks(callback: pl.Callback) -> None:
    """Each per-batch hook the callback's class leaves to the base class (a no-op) becomes None on
    the instance, so that Lightning skips it instead of calling it."""
    for hook in BATCH_HOOKS:
        if not overrides(callback, hook) and hook not in vars(callback):
            setattr(callback, hook, None)


def install_lifecycle(callbacks: Sequence[pl.Callback]) -> list[pl.Callback]:
    """`callbacks` with every `LifecyclePart` moved into one `RunLifecycle`, at the place of the
    first, and each callback's unused per-batch hooks skipped."""
    parts = [c for c in callbacks if isinstance(c, LifecyclePart)]
    out: list[pl.Callback] = []
    for callback in callbacks:
        if not isinstance(callback, LifecyclePart):
            out.append(callback)
        elif callback is parts[0]:
            out.append(RunLifecycle(parts))
    for callback in out:
        skip_unused_batch_hooks(callback)
    return out
