"""Rebuild a trained model from its checkpoint alone, for the entry points that run it outside a Trainer.

`predict.py` and `export.py` need the model with its weights and the datamodule (for its
`normalize` and its splits), but no Trainer: a checkpoint trained with DDP would otherwise shard
the inputs over processes, and export must trace the plain network on one device.
"""

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.utils.checkpoint import (
    check_compatible,
    load_checkpoint,
    merge_for_eval,
    run_config_from_checkpoint,
)
from src.utils.run_setup import prepare_run
from src.utils.validate import validate_config


def restore_run(
    cfg: DictConfig, overrides: list[str] | None = None
) -> tuple[DictConfig, pl.LightningDataModule, pl.LightningModule]:
    """The checkpoint's run config (+ this command's keys and overrides), its datamodule, and its
    model holding the checkpoint's weights, in eval mode on the CPU."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = merge_for_eval(
        run_config_from_checkpoint(checkpoint, cfg.ckpt_path), cfg, overrides or []
    )
    validate_config(cfg)
    prepare_run(cfg)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    check_compatible(checkpoint, model, cfg.ckpt_path, cfg)
    model.load_state_dict(checkpoint["state_dict"])
    return cfg, datamodule, model.eval()


def inference_device(cfg: DictConfig) -> torch.device:
    """The device `trainer.accelerator` names (`auto`: a GPU when there is one, else the CPU)."""
    accelerator = str((cfg.get("trainer") or {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")
