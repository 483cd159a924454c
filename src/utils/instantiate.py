"""Build the run's objects from the config: every one by `hydra.utils.instantiate` from `_target_`."""

from collections.abc import Mapping

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.utils.logging_utils import get_logger

log = get_logger(__name__)


def _instantiate_each(group: DictConfig | None, kind: type) -> list:
    """`callbacks:` and `logger:` are dicts of named entries (so one can be removed by name: `~callbacks.x`)."""
    objects = []
    for name, conf in (group or {}).items():
        if isinstance(conf, Mapping) and "_target_" in conf:
            log.info("Instantiating %s <%s>", name, conf._target_)
            obj = instantiate(conf)
            if not isinstance(obj, kind):
                raise TypeError(f"{name}: {conf._target_} is not a {kind.__name__}")
            objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[pl.Callback]:
    return _instantiate_each(cfg, pl.Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list:
    from pytorch_lightning.loggers import Logger

    return _instantiate_each(cfg, Logger)
