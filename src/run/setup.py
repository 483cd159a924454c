"""Prepare the process for a run: quiet warnings, matmul precision, the saved config, the seed."""

import warnings

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from src.run.config_files import print_config_tree, save_resolved_config

#: library warnings that say nothing actionable about a run of this template
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning internals on torch >= 2.10
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint.*",  # eval/test
    r".*does not have many workers.*",  # our in-memory loaders need none
    # a fresh run with an interrupt checkpoint configured (src/checkpoints/resume.py picks what to resume)
    r".*\(ckpt_path=None\)` was called without a model.*",
    r".*ckpt_path=\"last\"\) is set, but there is no last checkpoint available.*",
)


def prepare_run(cfg: DictConfig) -> None:
    """Apply `extras` (warnings, matmul precision), print and save the config, seed everything."""
    extras = cfg.get("extras") or {}
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("matmul_precision"):
        torch.set_float32_matmul_precision(extras["matmul_precision"])
    if extras.get("print_config", True):
        print_config_tree(cfg, cfg.paths.output_dir)
    save_resolved_config(cfg, cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
