"""One early check of the values that libraries would reject late (after data loading) or never.

Hydra already rejects unknown group options and misspelled keys (the configs are in struct mode);
this module covers the values inside the keys, before anything is built or written.
"""

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from expkit.data.folds import check_fold_settings
from expkit.errors import ConfigError
from expkit.run.value_checks import check_values
from expkit.utils.devices import available_devices, resolve_accelerator


def _check_devices(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    accelerator, devices = trainer.get("accelerator", "auto"), trainer.get("devices", "auto")
    kind = resolve_accelerator(accelerator)
    available = available_devices(kind)
    if kind in ("gpu", "mps") and available == 0:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but this machine has no {kind.upper()} "
            "device. Allowed here: trainer=cpu (or trainer=default, which picks what exists)."
        )
    is_count = isinstance(devices, int) and not isinstance(devices, bool)
    if is_count and devices > available:
        unit = "CPU core(s)" if kind == "cpu" else f"{kind.upper()} device(s)"
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {available} {unit}"
            f"{f' (trainer.accelerator=auto picks {kind})' if accelerator == 'auto' else ''}. "
            f"Allowed: 1..{available}, -1 or 'auto' (all of them)."
        )
    if (is_count and (devices == 0 or devices < -1)) or devices in ([], ""):
        raise ConfigError(
            f"trainer.devices={devices!r} is not allowed: use a count >= 1, -1 or 'auto'."
        )


def _check_sync_batchnorm(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU kernel); "
            "allowed with trainer.accelerator=cpu: false."
        )


def _check_cv(cfg: DictConfig) -> None:
    """`cv.folds`/`cv.fold`/`cv.seed`, and what cross-validation cannot be combined with."""
    cv = cfg.get("cv") or {}
    folds, fold, seed = cv.get("folds"), cv.get("fold"), cv.get("seed")
    if folds is None:
        if fold is not None:
            raise ConfigError(
                f"cv.fold={fold!r} needs cv.folds=K (how many folds); allowed: cv.folds=K "
                f"with cv.fold from 0 to K-1, or cv.fold=null."
            )
        return
    check_fold_settings(fold, folds)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(
            f"cv.seed={seed!r} is not allowed: the folds need a fixed integer seed in "
            "[0, 2**32) (cv.seed follows seed unless set)."
        )
    data = cfg.get("data") or {}
    if "folds" not in data:
        raise ConfigError(
            f"cv.folds={folds} but data={data.get('_target_', '?')} takes no fold (its config has "
            "no data.folds); allowed: a datamodule built on configs/data/base/in_memory.yaml."
        )
    if fold is not None:
        return
    if cfg.get("ckpt_path"):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} with cv.folds={folds}: every fold would continue one "
            "run's training state. Allowed: init_from=<ckpt> (each fold starts from its weights), "
            "resume=<cv run dir> (finish its folds), or cv.fold=K with ckpt_path."
        )
    if cfg.get("optuna_trial") is not None:
        raise ConfigError(
            f"cv.folds={folds} with an Optuna pruner: a pruner compares one fit's epochs, a trial "
            "here is several fits. Allowed: hydra.sweeper.pruner=null with cv.folds."
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` for the first bad value found; do nothing for a good config.

    The checks that depend on the module (what it logs, which groups it takes) are in
    `expkit.run.module_checks`."""
    check_values(cfg)  # the type and range of each value (expkit/run/value_checks.py)
    _check_devices(cfg)
    _check_sync_batchnorm(cfg)
    _check_cv(cfg)


@rank_zero_only
def fetch_data_first(datamodule: pl.LightningDataModule) -> None:
    """Find (or download, where the network allows) the dataset files before anything is written.

    `prepare_data` is the hook Lightning calls once per node to download; called here first (by
    rank 0), missing files fail with one clear line instead of inside `trainer.fit`, and
    Lightning's own call then finds the files or the decoded cache and returns at once.
    """
    prepare = getattr(datamodule, "prepare_data", None)
    if callable(prepare):
        prepare()
