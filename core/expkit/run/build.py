"""Build the run's Lightning objects from the config: every one by `hydra.utils.instantiate`."""

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from expkit.callbacks.progress_bar import ThrottledRichProgressBar
from expkit.callbacks.restored_state import RestoredStateGuard
from expkit.checkpoints.atomic_io import AtomicCheckpointIO
from expkit.checkpoints.run_config import RunConfigInCheckpoint
from expkit.errors import ConfigError
from expkit.run.profiler import NoOpProfiler
from expkit.utils.console_logging import quiet_third_party_tips
from expkit.utils.logging_utils import get_logger
from expkit.callbacks.lifecycle import install_lifecycle

log = get_logger(__name__)


def _instantiate_each(group: DictConfig | None, kind: type, group_name: str) -> list:
    """`callbacks:` and `logger:` are dicts of named entries (so one can be removed by name: `~callbacks.x`)."""
    objects = []
    for name, conf in (group or {}).items():
        if isinstance(conf, Mapping) and "_target_" in conf:
            target: str = str(conf["_target_"])
            log.debug("Instantiating %s <%s>", name, target)  # the log file
            obj = instantiate(conf)
            if not isinstance(obj, kind):
                raise ConfigError(
                    f"{group_name}.{name!s}._target_={target!r} is not a {kind.__name__}; "
                    f"allowed: a subclass of {kind.__module__}.{kind.__name__}."
                )
            objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[pl.Callback]:
    return _instantiate_each(cfg, pl.Callback, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Any]:
    from pytorch_lightning.loggers import Logger

    return _instantiate_each(cfg, Logger, "logger")


def build_trainer(cfg: DictConfig, store_config: bool = False) -> pl.Trainer:
    """Callbacks and loggers from their config groups, then the trainer that uses them.

    Every checkpoint is written atomically (`AtomicCheckpointIO`); with `store_config`, each one
    also carries the run's resolved config, so eval/predict/export need nothing else. Callback
    state restored from a checkpoint names files inside this run only, and the settings configured
    now win over the restored ones (`RestoredStateGuard`). The template's own callbacks are
    installed as the parts of one `RunLifecycle`, and per-batch hooks that a callback leaves empty
    are not called (`install_lifecycle`).
    """
    quiet_third_party_tips()
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    callbacks.append(RestoredStateGuard(cfg.paths.output_dir))
    if store_config:
        stored = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(stored, dict)
        callbacks.append(RunConfigInCheckpoint({str(k): v for k, v in stored.items()}))
    if "callbacks" not in cfg and cfg.trainer.get("enable_progress_bar", True) is not False:
        # eval/predict/export have no callbacks group: our bar rather than Lightning's default
        # (no `0.00it/s`, nothing when redirected; expkit/callbacks/progress_bar.py)
        callbacks.append(ThrottledRichProgressBar())
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger; history.csv keeps the LR
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks = install_lifecycle(
        callbacks
    )  # our own callbacks as one (expkit/callbacks/lifecycle.py)
    # trainer.profiler=null: a profiler that costs nothing per hook (see expkit/run/profiler.py)
    extra: dict[str, Any] = {} if cfg.trainer.get("profiler") else {"profiler": NoOpProfiler()}
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(trainer_cfg, dict)
    plugins = list(instantiate(trainer_cfg.pop("plugins", None)) or [])
    if not any(hasattr(p, "save_checkpoint") for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=plugins, **extra
    )
