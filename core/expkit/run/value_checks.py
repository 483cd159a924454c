"""The type and range of every value the template hands to a library, as one table.

A value of the wrong type or out of range passes Hydra (it knows no types for `trainer.*`,
`data.*`, `optimizer.*`) and then fails deep inside Lightning, torch or numpy, with a traceback,
often after the data were loaded: `trainer.max_epochs=1.5`, `data.batch_size=1e9` (a float),
`optimizer.lr=nan`, `seed=-1` or `seed=2**40` (numpy seeds are 0..2**32-1). `CHECKS` says, per
key, what is allowed; `check_values` refuses the first value that is not, in one line: the key, the
value, what is allowed. A key the config does not have (another task, another data module) or a
value left null where null is allowed is not checked. Interpolations are checked as resolved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from expkit.errors import ConfigError

#: numpy's seed range (Lightning seeds numpy with the same value)
SEED_MAX = 2**32 - 1
#: a sample count nothing real exceeds: beyond it torch's index arithmetic overflows first
COUNT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Check:
    """What a key accepts: `ok(value)` and the words for it (`allowed`)."""

    ok: Callable[[Any], bool]
    allowed: str
    nullable: bool = False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(
    low: int, high: int = COUNT_MAX, also: Sequence[int] = (), nullable: bool = False
) -> Check:
    if high != COUNT_MAX:
        words = f"a whole number from {low} to {high}"
    else:
        words = "a whole number > 0" if low == 1 else f"a whole number >= {low}"
    if also:
        words += f" (or {', '.join(map(str, also))})"
    if high == COUNT_MAX:
        words += f", at most {COUNT_MAX}"
    return Check(
        lambda v: _is_int(v) and (low <= v <= high or v in also), words, nullable
    )  # fmt: skip


def number(
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    nullable: bool = False,
) -> Check:
    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)

    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    return Check(ok, f"a finite number {' and '.join(bounds)}".strip(), nullable)


def count_or_fraction(fraction_high_open: bool = False, nullable: bool = True) -> Check:
    """Lightning's `limit_*_batches`, `overfit_batches`; the data's `val_size`/`test_size`."""

    def ok(v: Any) -> bool:
        if _is_int(v):
            return 0 <= v <= COUNT_MAX
        return (
            _is_number(v) and 0.0 <= v < 1.0
            if fraction_high_open
            else _is_number(v) and 0.0 <= v <= 1.0
        )

    top = "1" if not fraction_high_open else "1 (excluded)"
    return Check(ok, f"a whole number >= 0 (a count) or a fraction from 0.0 to {top}", nullable)


def choice(options: Sequence[Any]) -> Check:
    return Check(lambda v: not isinstance(v, bool) and v in options, f"one of {list(options)}")


def pair_of_fractions() -> Check:
    """Adam's `betas`: two numbers in [0, 1)."""

    def ok(v: Any) -> bool:
        items = list(v) if OmegaConf.is_list(v) or isinstance(v, list | tuple) else None
        return (
            items is not None
            and len(items) == 2
            and all(_is_number(b) and 0.0 <= b < 1.0 for b in items)
        )

    return Check(ok, "two numbers from 0.0 to 1 (excluded), e.g. [0.9,0.999]")


def _precisions() -> list[Any]:
    import typing

    from lightning_fabric.connector import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    return [
        *typing.get_args(_PRECISION_INPUT_STR),
        *typing.get_args(_PRECISION_INPUT_STR_ALIAS),
        *typing.get_args(_PRECISION_INPUT_INT),
    ]


#: key -> what it accepts (keys missing from a config are skipped)
CHECKS: dict[str, Check] = {
    "seed": integer(0, SEED_MAX, nullable=True),
    # the trainer (Lightning)
    "trainer.max_epochs": integer(1, also=(-1,), nullable=True),
    "trainer.min_epochs": integer(0, nullable=True),
    "trainer.max_steps": integer(1, also=(-1,)),
    "trainer.min_steps": integer(0, nullable=True),
    "trainer.num_nodes": integer(1),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.check_val_every_n_epoch": integer(1, nullable=True),
    "trainer.log_every_n_steps": integer(1, nullable=True),
    "trainer.num_sanity_val_steps": integer(0, also=(-1,), nullable=True),
    "trainer.gradient_clip_val": number(0.0, nullable=True),
    "trainer.limit_train_batches": count_or_fraction(),
    "trainer.limit_val_batches": count_or_fraction(),
    "trainer.limit_test_batches": count_or_fraction(),
    "trainer.limit_predict_batches": count_or_fraction(),
    "trainer.overfit_batches": count_or_fraction(),
    "trainer.val_check_interval": Check(
        lambda v: (_is_int(v) and v >= 1) or (_is_number(v) and 0.0 < v <= 1.0),
        "a whole number of batches >= 1 or a fraction of an epoch in (0.0, 1.0]",
        nullable=True,
    ),
    "trainer.precision": Check(
        lambda v: not isinstance(v, bool) and v in _precisions(),
        "one of Lightning's precisions: 32-true, 16-mixed, bf16-mixed, 16-true, bf16-true, "
        "64-true (or 32, 16, 64, bf16)",
        nullable=True,
    ),
    "trainer.devices": Check(
        lambda v: (
            v == "auto"
            or (_is_int(v) and (v >= 1 or v == -1))
            or (isinstance(v, str) and v.replace(",", "").strip().isdigit())
            or (
                (OmegaConf.is_list(v) or isinstance(v, list))
                and len(v) > 0
                and all(_is_int(i) and i >= 0 for i in v)
            )
        ),
        "a count >= 1, -1 or 'auto' (all of them), or a list of device indices, e.g. [0,1]",
    ),
    # the data
    "data.batch_size": integer(1),
    "data.eval_batch_size": integer(1, nullable=True),
    "data.num_workers": integer(0, 1024),
    "data.val_size": count_or_fraction(fraction_high_open=True),
    "data.test_size": count_or_fraction(fraction_high_open=True),
    "data.decode_threads": integer(1, 1024, nullable=True),
    # the optimizer and the scheduler (torch)
    "optimizer.lr": number(0.0, low_open=True),
    "optimizer.weight_decay": number(0.0, nullable=True),
    "optimizer.momentum": number(0.0, 1.0, nullable=True),
    "optimizer.dampening": number(0.0, 1.0, nullable=True),
    "optimizer.eps": number(0.0, low_open=True, nullable=True),
    "optimizer.betas": pair_of_fractions(),
    "scheduler.step_size": integer(1),
    "scheduler.gamma": number(0.0, low_open=True),
    "scheduler.T_max": integer(1),
    "scheduler.eta_min": number(0.0),
    "scheduler.factor": number(0.0, 1.0, low_open=True, high_open=True),
    "scheduler.patience": integer(0),
    # callbacks (cv.folds/cv.fold/cv.seed: expkit/data/folds.py and validate.py say more)
    "callbacks.early_stopping.patience": integer(0),
    "callbacks.early_stopping.min_delta": number(0.0),
    "callbacks.model_checkpoint.save_top_k": integer(0, also=(-1,)),
}


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """(present, value) of `key`, resolved; a key the config lacks is (False, None)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not isinstance(node, DictConfig) or leaf not in node:
        return False, None
    return True, OmegaConf.select(cfg, key, default=None)


def check_values(cfg: DictConfig, checks: dict[str, Check] = CHECKS) -> None:
    """Raise `ConfigError` for the first value outside its `Check` (one line: key, value, allowed)."""
    for key, check in checks.items():
        present, value = _select(cfg, key)
        if not present or (value is None and check.nullable):
            continue
        shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if value is None or not check.ok(value):
            allowed = check.allowed + (", or null" if check.nullable else "")
            raise ConfigError(f"{key}={shown!r} is not allowed: it must be {allowed}.")
