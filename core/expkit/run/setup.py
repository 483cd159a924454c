"""Prepare the process for a run: quiet warnings, matmul precision, the saved config, the seed."""

import warnings

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from expkit.errors import ConfigError
from expkit.run.config_files import save_config_tree, save_resolved_config
from expkit.run.header import header_text
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

#: extras.print_config: the header (true), the whole config tree as well (full), nothing (false)
PRINT_CONFIG = (True, "full", False)

#: library warnings that say nothing actionable about a run of this template
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning internals on torch >= 2.10
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint.*",  # eval/test
    r".*does not have many workers.*",  # our in-memory loaders need none
    # a fresh run with an interrupt checkpoint configured (expkit/checkpoints/resume.py picks what to resume)
    r".*\(ckpt_path=None\)` was called without a model.*",
    r".*ckpt_path=\"last\"\) is set, but there is no last checkpoint available.*",
    # run directories are new for every run, or continued on purpose (resume=, a requeue)
    r"Checkpoint directory .* exists and is not empty.*",
)


def prepare_run(cfg: DictConfig) -> None:
    """Apply `extras` (warnings, matmul precision), print the header, save the config, seed."""
    extras = cfg.get("extras") or {}
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("matmul_precision"):
        torch.set_float32_matmul_precision(extras["matmul_precision"])
    show = extras.get("print_config", True)
    if show not in PRINT_CONFIG:
        raise ConfigError(
            f"extras.print_config={show!r} is not allowed; allowed: true (a short header), full "
            "(the whole config tree too), false (nothing)."
        )
    if show is not False:
        log.info("%s", header_text(cfg))
        save_config_tree(cfg, cfg.paths.output_dir, show=show == "full")
    save_resolved_config(cfg, cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
