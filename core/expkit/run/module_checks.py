"""The checks that depend on the user's LightningModule, run before its first training step.

Any `LightningModule` trains here (nothing of ours to subclass), so what it logs and which config
groups it reads are found out, not assumed:

- What it logs: a module may declare `LOGGED_METRICS` (ours do, derived from their metric
  declarations: free); otherwise a dry run on one batch finds out: a throwaway Trainer fits a copy
  of the module for one training and one validation batch (and tests one batch when a checked name
  is a test metric), with the random state put back afterwards, so the real run is unchanged.
  The monitored metric and `optimized_metric` must be among those names (Lightning would otherwise
  fail after a whole epoch, and a sweep job after its whole training): one line names the metric,
  what the module logs and the override to type.
- Which groups it reads: the `optimizer` and `scheduler` groups reach a module only through its
  config (`optimizer: ${optimizer}`). A typed override of a group that the module's config does not
  take (`optimizer.lr=...` for a module with its own `configure_optimizers`) would change nothing:
  it is refused in one line, and `ignored_groups` keeps those groups out of the loggers' hparams.
"""

from __future__ import annotations

import copy
import difflib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from expkit.errors import ConfigError
from expkit.utils.logging_utils import get_logger
from expkit.utils.metric_names import find, lower_is_better, stage_of

log = get_logger(__name__)

#: config groups a model config takes by naming them (`optimizer: ${optimizer}`), or ignores
MODULE_GROUPS = ("optimizer", "scheduler")


# ---- config groups the module ignores ----------------------------------------------------------
def ignored_groups(cfg: DictConfig) -> list[str]:
    """The groups of `MODULE_GROUPS` that the model's config does not pass to the module."""
    model = cfg.get("model") or {}
    return [group for group in MODULE_GROUPS if group not in model]


def typed_overrides() -> list[str]:
    """The overrides of this run as typed (a sweep job's own values included); [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def check_ignored_groups(cfg: DictConfig, overrides: Sequence[str] | None = None) -> None:
    """Refuse `optimizer.*`, `optimizer=…`, `scheduler…` overrides that the module would ignore."""
    from expkit.run.resume_args import override_key

    ignored = ignored_groups(cfg)
    if not ignored:
        return
    typed = typed_overrides() if overrides is None else list(overrides)
    for arg in typed:
        key = override_key(arg).lstrip("+~")
        group = key.split(".")[0].split("/")[0]
        if group in ignored:
            target = (cfg.get("model") or {}).get("_target_", "?")
            raise ConfigError(
                f"{arg} changes nothing: model={target} builds its own optimizer (its config has "
                f"no `{group}:` key), so the {group} group is ignored. Allowed: the model's own "
                f"arguments (model.lr=... and the like, see `python src/train.py --cfg job "
                f"--package model`), or add `{group}: ${{{group}}}` to the model's config and "
                f"a `{group}` argument to its constructor."
            )


# ---- what the module logs -----------------------------------------------------------------------
def _checked_names(cfg: DictConfig, trainer: pl.Trainer, model: Any) -> list[tuple[str, str]]:
    """(override to fix it, metric name) for every name the run will look up among the logged ones."""
    names: list[tuple[str, str]] = []
    monitor = cfg.get("monitor") or {}
    if monitor.get("metric"):  # the key users set; the callbacks copy it by interpolation
        names.append(("monitor.metric", str(monitor["metric"])))
    for callback in getattr(trainer, "callbacks", []):
        value = getattr(callback, "monitor", None)
        if value is not None and all(value != n for _, n in names):
            names.append((f"{type(callback).__name__}.monitor", str(value)))
    if getattr(model, "scheduler_factory", None) is not None:
        value = getattr(model, "hparams", {}).get("monitor")
        if value is not None:
            names.append(("model.monitor", str(value)))
    if cfg.get("optimized_metric"):
        names.append(("optimized_metric", str(cfg.optimized_metric)))
    return names


def logged_metrics(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    cfg: DictConfig,
    with_test: bool = False,
) -> tuple[str, ...]:
    """Every metric name the module logs: its `LOGGED_METRICS` when it declares them, otherwise
    what a dry run on one batch logs (`with_test`: test one batch too)."""
    declared = getattr(model, "LOGGED_METRICS", None)
    if declared is not None:
        return tuple(declared)
    return dry_run(model, datamodule, cfg, with_test)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """The throwaway Trainer's banners ('GPU available…') would read as the real run's."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def dry_run(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    cfg: DictConfig,
    with_test: bool = False,
) -> tuple[str, ...]:
    """Fit a copy of `model` on one training batch and one validation batch with a bare Trainer
    (the run's accelerator and precision, one device, no callbacks, loggers or checkpoints);
    return the names in its `callback_metrics`. The random state is put back afterwards."""
    from hydra.utils import instantiate
    from pytorch_lightning.utilities.seed import isolate_rng

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    assert isinstance(trainer_cfg, dict)
    for key in ("plugins", "profiler", "strategy", "num_nodes", "sync_batchnorm", "logger"):
        trainer_cfg.pop(key, None)
    devices = trainer_cfg.get("devices")
    one_device = devices if isinstance(devices, list) and len(devices) == 1 else 1
    trainer_cfg.update(
        devices=one_device,
        max_epochs=1,
        max_steps=-1,
        min_epochs=None,
        min_steps=None,
        max_time=None,
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=1,
        num_sanity_val_steps=0,
        val_check_interval=1.0,
        check_val_every_n_epoch=1,
        overfit_batches=0.0,
        fast_dev_run=False,
        accumulate_grad_batches=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    probe = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="dry-run-") as tmp, isolate_rng(), _quiet_lightning():
        trainer_cfg["default_root_dir"] = tmp
        trainer = instantiate(trainer_cfg, logger=False, callbacks=[])
        trainer.fit(probe, datamodule=datamodule)
        names = set(trainer.callback_metrics)
        if with_test and pl.utilities.model_helpers.is_overridden("test_step", probe):
            trainer.test(probe, datamodule=datamodule, verbose=False)
            names |= set(trainer.callback_metrics)
    return tuple(sorted(names))


def _fix(name: str, logged: Sequence[str], where: str) -> str:
    """The override that would make `where` name a logged metric."""
    stage = stage_of(name) or "val"
    candidates = [m for m in logged if stage_of(m) == stage] or list(logged)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    if not close:
        return ""
    pick = close[0]
    if where == "monitor.metric":
        return f"monitor.metric={pick} monitor.mode={'min' if lower_is_better(pick) else 'max'}"
    if where == "optimized_metric":
        return f"optimized_metric={pick}"
    return f"{where}={pick}"


def missing_names(names: Iterable[tuple[str, str]], logged: Sequence[str]) -> list[tuple[str, str]]:
    """The names not logged. Callbacks look a monitor up exactly (Lightning's `callback_metrics`
    holds `x`, `x_step` and `x_epoch` when all exist); the optimized metric is read from the
    run's metrics, where `x_epoch` is kept as `x`, so either spelling finds it."""
    return [
        (where, name)
        for where, name in names
        if (find(name, logged) if where == "optimized_metric" else name if name in logged else None)
        is None
    ]


def check_monitored_metrics(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: Any,
    datamodule: pl.LightningDataModule | None = None,
) -> tuple[str, ...] | None:
    """Every monitored key, and `optimized_metric`, must be one the module logs; checked before
    the first training step. Returns the names the module logs (None when nothing was checked)."""
    names = _checked_names(cfg, trainer, model)
    declared = getattr(model, "LOGGED_METRICS", None)
    if not names or (declared is None and datamodule is None):
        return tuple(declared) if declared is not None else None
    from expkit.run.lock import is_rank_zero

    if declared is None and not is_rank_zero():  # rank 0 checked before it started the others
        return None
    with_test = any(stage_of(name) == "test" for _, name in names)
    assert datamodule is not None or declared is not None
    logged = logged_metrics(model, datamodule, cfg, with_test)  # type: ignore[arg-type]
    missing = missing_names(names, logged)
    if missing:
        what = " and ".join(f"{where}={name!r}" for where, name in missing)
        fixes = " ".join(f for f in (_fix(n, logged, w) for w, n in missing) if f)
        target = (cfg.get("model") or {}).get("_target_", type(model).__name__)
        raise ConfigError(
            f"{what} {'is' if len(missing) == 1 else 'are'} never logged by model={target}; it "
            f"logs: {', '.join(logged) or 'nothing'}. Type: {fixes or 'a metric it logs'} (or set "
            "`monitor:` and `optimized_metric:` in the model's config)."
        )
    return logged
