"""The plan of a training run: read from `cfg` once, checked once, then handed to the steps.

Every check of the inputs that does not need the module runs here, in one place and in order,
before anything is built or written: the values (`validate.py`), the groups the module ignores,
tags, `init_from`, the targets a `resume=` brings, and which checkpoint the fit continues from.
The steps after it take the plan's fields (a monitor, a checkpoint path, a metric name) instead
of digging into `cfg` again; `cfg` itself is still what builds the model, data, callbacks,
loggers and trainer (`hydra.utils.instantiate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from expkit.checkpoints.init_from import check_init_from
from expkit.checkpoints.resume import checkpoint_to_resume
from expkit.checkpoints.target_policy import check_targets, trusted_targets
from expkit.run.module_checks import check_ignored_groups
from expkit.run.tags import check_tags
from expkit.run.validate import validate_config


@dataclass(frozen=True)
class Monitor:
    """The metric checkpoints and early stopping watch (`monitor.metric`, `monitor.mode`)."""

    metric: str | None = None
    mode: str = "max"


@dataclass(frozen=True)
class Features:
    """The optional features this run selected; each is imported only when selected."""

    cross_validation: bool = False
    loggers: tuple[str, ...] = ()
    gpu_pool_job: bool = False
    slurm_job: bool = False


@dataclass(frozen=True)
class RunPlan:
    """What a training run will do, as checked before its first step."""

    output_dir: Path
    monitor: Monitor
    #: the checkpoint `fit` continues from (resume=, ckpt_path=, a requeue), or None
    resume_from: str | None = None
    #: the metric a sweep ranks this run by (`optimized_metric`), or None
    optimized_metric: str | None = None
    #: exact `_target_` names the user trusted on the command line (`trusted_targets=[…]`)
    trusted_targets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    #: weights to start from (`init_from`, `init_from_keys`) when not resuming
    init_from: str | None = None
    init_from_keys: Any = None
    #: test the best checkpoint after fitting (`test`)
    test_after_fit: bool = True
    #: this run is one fold of a cross-validation: `{fold, folds, seed}`
    cv_fold: dict[str, int] | None = None
    features: Features = field(default_factory=Features)

    def record_facts(self) -> dict[str, Any]:
        """What results.json says about the plan (`tags`, `resumed_from`, `cv`)."""
        facts: dict[str, Any] = {"tags": list(self.tags), "resumed_from": self.resume_from}
        if self.cv_fold is not None:
            facts["cv"] = dict(self.cv_fold)
        return facts


def plan_training(cfg: DictConfig, find_checkpoint: bool = True) -> RunPlan:
    """Check every input of a training run and plan it; raise the first user error found.

    `find_checkpoint=False` (the parent run of a cross-validation, which trains nothing itself)
    skips choosing a checkpoint to resume.
    """
    validate_config(cfg)
    check_ignored_groups(cfg)  # optimizer.lr=... for a module with its own optimizer: refused
    tags = check_tags(cfg)
    cfg.tags = tags  # the loggers' tags read the cleaned list
    check_init_from(cfg)
    trusted = tuple(trusted_targets(cfg))
    if cfg.get("resume"):  # the config came partly from the run directory's overrides.yaml
        check_targets(cfg, f"resume={cfg.resume}", trusted)
    monitor = cfg.get("monitor") or {}
    cv = OmegaConf.select(cfg, "cv") or {}
    fold = cv.get("fold") if cv else None
    return RunPlan(
        output_dir=Path(cfg.paths.output_dir),
        monitor=Monitor(monitor.get("metric"), monitor.get("mode", "max")),
        resume_from=checkpoint_to_resume(cfg) if find_checkpoint else None,
        optimized_metric=cfg.get("optimized_metric"),
        trusted_targets=trusted,
        tags=tuple(tags),
        init_from=cfg.get("init_from"),
        init_from_keys=cfg.get("init_from_keys"),
        test_after_fit=bool(cfg.get("test", True)),
        cv_fold=None if fold is None else {k: int(cv[k]) for k in ("fold", "folds", "seed")},
        features=_features(cfg, cv),
    )


def _features(cfg: DictConfig, cv: Any) -> Features:
    import os

    loggers = cfg.get("logger") or {}
    return Features(
        cross_validation=bool(cv and cv.get("folds") and cv.get("fold") is None),
        loggers=tuple(str(name) for name in loggers),
        gpu_pool_job="GPU_POOL_GPU" in os.environ,
        slurm_job="SLURM_JOB_ID" in os.environ,
    )
