"""Rebuild a trained run from its checkpoint alone (eval, predict, export).

The checkpoint carries its run's resolved config (`expkit.checkpoints.run_config`). From it come the
model and the data's *values* only (`stored_values.RESTORED_ROOTS`, with every location key
re-derived from this clone's `paths` and `download` false, and no interpolation resolved);
trainer, callbacks, loggers, profiler and every path come from this command's own config and run
directory, and whatever the user typed comes on top. Every `_target_` of the result is checked
(`target_policy`) before anything is built; then the datamodule and the model are built and the
weights loaded. No Trainer here: predict and export run the plain model on one device, whatever
strategy it was trained with.
"""

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from expkit.checkpoints.load import load_checkpoint
from expkit.checkpoints.run_config import read_run_config
from expkit.checkpoints.stored_values import (
    RESTORED_ROOTS,
    rederive_locations,
    refuse_interpolations,
)
from expkit.checkpoints.target_policy import check_targets, trusted_targets
from expkit.checkpoints.verify import check_compatible
from expkit.run.setup import prepare_run
from expkit.run.validate import validate_config
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

#: the keys that define *what* a run computes; eval/predict/export take them from the checkpoint
STORED_KEYS = RESTORED_ROOTS


def task_overrides() -> list[str]:
    """What the user typed for this command (empty outside a Hydra run, e.g. a test's compose)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def stored_values(stored: DictConfig, source: str) -> dict[str, Any]:
    """The whitelisted part of a checkpoint's config, as plain values in this clone's places."""
    plain = OmegaConf.to_container(stored, resolve=False)  # reading a node would resolve it
    assert isinstance(plain, dict)
    taken = {key: plain[key] for key in STORED_KEYS if key in plain}
    refuse_interpolations(taken, source)
    changed: list[str] = []
    placed = {key: rederive_locations(value, key, changed) for key, value in taken.items()}
    if changed:
        log.info(
            "%s: from this clone's paths, not the checkpoint's: %s", source, ", ".join(changed)
        )
    return placed


def merge_stored(stored: DictConfig, own: DictConfig, overrides: list[str]) -> DictConfig:
    """The stored run keys + this command's own keys + what the user typed, in that order.

    Command-line overrides were already validated and composed by Hydra into `own`; the value at
    each overridden stored key is copied from there, so `data.batch_size=64` and `trainer=gpu` work.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged = OmegaConf.to_container(own, resolve=False)
    assert isinstance(merged, dict)
    merged.update(stored_values(stored, f"ckpt_path={own.get('ckpt_path')}"))
    result = OmegaConf.create(merged)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group.lstrip("~+")
        if key.split(".", 1)[0] not in STORED_KEYS:
            continue
        value = _plain(OmegaConf.select(own, key, default=None))
        OmegaConf.update(result, key, value, merge=False, force_add=True)
    return result


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def restore_run(
    cfg: DictConfig, overrides: list[str] | None = None
) -> tuple[DictConfig, Any, pl.LightningModule]:
    """The checkpoint's run config (+ this command's keys and overrides), its datamodule (whatever
    class the config names), and its model holding the checkpoint's weights, in eval mode on the CPU."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    stored = read_run_config(checkpoint, cfg.ckpt_path)
    typed = task_overrides() if overrides is None else overrides
    merged = merge_stored(stored, cfg, typed)
    check_targets(merged, source=f"ckpt_path={cfg.ckpt_path}", trusted=trusted_targets(cfg))
    validate_config(merged)
    prepare_run(merged)
    datamodule = instantiate(merged.data, _convert_="all")
    fitted = checkpoint.get(type(datamodule).__qualname__)  # what the datamodule fitted on train
    if isinstance(fitted, dict) and hasattr(datamodule, "load_state_dict"):
        datamodule.load_state_dict(fitted)
    model = instantiate(merged.model, _convert_="all")
    check_compatible(checkpoint, model, cfg.ckpt_path, merged)
    model.load_state_dict(checkpoint["state_dict"])
    return merged, datamodule, model.eval()
