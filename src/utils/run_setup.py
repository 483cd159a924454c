"""The steps train and eval share: prepare the process, build the trainer, check what it monitors."""

import warnings

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

from src.callbacks.run_config import RunConfigInCheckpoint
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers
from src.utils.loggers import log_tensorboard_hparams
from src.utils.logging_utils import get_logger
from src.utils.profiler import NoOpProfiler
from src.utils.run_artifacts import print_config_tree, save_resolved_config
from src.utils.validate import validate_monitor

log = get_logger(__name__)

#: library warnings that say nothing actionable about a run of this template
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning internals on torch >= 2.10
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint.*",  # eval/test
    r".*does not have many workers.*",  # our in-memory loaders need none
    # a fresh run with an interrupt checkpoint configured (src/utils/resume.py picks what to resume)
    r".*\(ckpt_path=None\)` was called without a model.*",
    r".*ckpt_path=\"last\"\) is set, but there is no last checkpoint available.*",
)

CONFIG_ORDER = (
    "data",
    "model",
    "optimizer",
    "scheduler",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "extras",
)


def prepare_run(cfg: DictConfig) -> None:
    """Apply `extras` (warnings, matmul precision), print and save the config, seed everything."""
    extras = cfg.get("extras") or {}
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("matmul_precision"):
        torch.set_float32_matmul_precision(extras.matmul_precision)
    if extras.get("print_config", True):
        print_config_tree(cfg, cfg.paths.output_dir, order=CONFIG_ORDER)
    save_resolved_config(cfg, cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)


def build_trainer(cfg: DictConfig, run_config: dict | None = None) -> pl.Trainer:
    """Callbacks and loggers from their config groups, then the trainer that uses them."""
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if run_config is not None:
        callbacks.append(RunConfigInCheckpoint(run_config))
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger; history.csv keeps the LR
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # trainer.profiler=null: a profiler that costs nothing per hook (see src/utils/profiler.py)
    extra = {} if cfg.trainer.get("profiler") else {"profiler": NoOpProfiler()}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)


def check_monitored_metrics(
    cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule
) -> None:
    """Every monitored key must be one the model logs, or Lightning fails only after an epoch."""
    logged = getattr(model, "LOGGED_METRICS", None)
    if logged is None:
        return
    if cfg.get("monitor"):  # the key users set; the callbacks below copy it by interpolation
        validate_monitor(cfg.monitor.get("metric"), logged, "monitor.metric")
    for callback in trainer.callbacks:
        monitor = getattr(callback, "monitor", None)
        if monitor is not None:
            validate_monitor(monitor, logged, f"{type(callback).__name__}.monitor")
    if getattr(model, "scheduler_factory", None) is not None:
        validate_monitor(model.hparams.get("monitor"), logged, "model.monitor")
    if cfg.get("optimized_metric"):
        validate_monitor(cfg.optimized_metric, logged, "optimized_metric")


def log_hyperparameters(cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule) -> None:
    """Send the run's choices and the model size to every logger (TensorBoard's HPARAMS tab)."""
    if not trainer.loggers:
        return
    hparams = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        if isinstance(cfg[k], DictConfig)
        else cfg[k]
        for k in ("data", "model", "optimizer", "scheduler", "trainer", "seed")
        if k in cfg
    }
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    metrics = getattr(model, "LOGGED_METRICS", None) or [cfg.get("monitor", {}).get("metric")]
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
        if isinstance(logger, TensorBoardLogger):
            log_tensorboard_hparams(logger, hparams, [m for m in metrics if m])
