"""Train a model and test its best checkpoint.

python src/train.py                                  # digits + MLP on CPU, under a minute
python src/train.py model=resnet data=cifar10 trainer=gpu
python src/train.py -m optimizer.lr=1e-3,1e-2 seed=1,2,3
python src/train.py resume=logs/train/runs/<run>        # continue a run in its own directory
python src/train.py cv.folds=5                        # 5-fold cross-validation (core/expkit/cv/)
"""

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

import expkit.utils  # noqa: F401  (registers the config resolvers)
from expkit.callbacks.finite_loss import fail_if_diverged, lr_hint
from expkit.checkpoints.init_from import load_initial_weights
from expkit.checkpoints.resume import (
    best_checkpoint,
    checkpoints_in_run,
    first_step_to_log,
    remove_requeue_checkpoints,
)
from expkit.cv.runner import cross_validate, cross_validation
from expkit.loggers.continued import continue_histories
from expkit.loggers.hparams import log_hyperparameters
from expkit.run.build import build_trainer
from expkit.run.fit_summary import fit_metrics, fit_rows
from expkit.run.lifecycle import open_run
from expkit.run.module_checks import check_monitored_metrics
from expkit.run.plan import plan_training
from expkit.run.provenance import provenance_summary, write_provenance
from expkit.run.record import RunRecord
from expkit.run.setup import prepare_run
from expkit.run.validate import fetch_data_first
from expkit.sweeps.job import require_optimized_metric
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


def test_best_checkpoint(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    """Reload the best checkpoint (not the last weights) and test it."""
    ckpt_path = best_checkpoint(trainer)
    if ckpt_path is None and getattr(trainer, "fast_dev_run", False):
        log.info("trainer.fast_dev_run writes no checkpoint: testing the current weights.")
    elif ckpt_path is None and trainer.checkpoint_callback is None:
        log.warning("No ModelCheckpoint callback: testing the current weights.")
    elif ckpt_path is None:
        log.warning(
            "ModelCheckpoint kept no best checkpoint (monitor %r never logged?): testing the "
            "current weights.",
            getattr(trainer.checkpoint_callback, "monitor", None),
        )
    # verbose=False: the run's summary shows the test metrics with the others
    results = trainer.test(
        model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False
    )
    return dict(results[0]) if results else {}


def record_checkpoints(record: RunRecord, trainer: pl.Trainer) -> None:
    record.best_model_path = best_checkpoint(trainer)
    record.last_model_path = next(map(str, checkpoints_in_run(record.output_dir)), None)


def check_inputs(cfg: DictConfig, record: RunRecord) -> None:
    """The checks of a cross-validation's parent run (it trains nothing itself)."""
    record.extra.update(plan_training(cfg, find_checkpoint=False).record_facts())


def train(cfg: DictConfig) -> dict[str, float | str]:
    """One training run; with `cv.folds=k`, one per fold and their means (`expkit.cv.runner`)."""
    if cross_validation(cfg):
        return cross_validate(cfg, train_run, check_inputs)
    return train_run(cfg)


def train_run(cfg: DictConfig) -> dict[str, float | str]:
    """Fit, test the best checkpoint, write the run's artifacts; return every final metric."""
    with open_run("train", cfg) as record:
        plan = plan_training(cfg)  # every input checked; nothing built or written yet
        record.extra.update(plan.record_facts())
        record.extra["provenance"] = provenance_summary(write_provenance(plan.output_dir))
        prepare_run(cfg)
        datamodule = instantiate(cfg.data, _convert_="all")
        fetch_data_first(datamodule)
        model = instantiate(cfg.model, _convert_="all")
        if plan.init_from and plan.resume_from is None:  # a resumed fine-tune has its own weights
            report = load_initial_weights(model, plan.init_from, plan.init_from_keys)
            record.extra["init_from"] = report.to_dict()
        trainer = build_trainer(cfg, store_config=True)
        continue_histories(trainer.loggers, first_step_to_log(plan.resume_from))
        # what the module logs (declared, or found by a dry run on one batch) vs what is watched
        logged = check_monitored_metrics(cfg, trainer, model, datamodule)
        log_hyperparameters(cfg, trainer, model, logged)

        trainer.fit(model, datamodule=datamodule, ckpt_path=plan.resume_from, weights_only=True)
        record.add_metrics(fit_metrics(trainer))
        fail_if_diverged(record.metrics, epochs=trainer.current_epoch, hint=lr_hint(model))
        if trainer.is_global_zero:
            remove_requeue_checkpoints(record.output_dir)
        if plan.test_after_fit:
            record.add_metrics(test_best_checkpoint(trainer, model, datamodule))
        record_checkpoints(record, trainer)
        record.summary_rows = fit_rows(plan.monitor, record, trainer)
        require_optimized_metric(plan.optimized_metric, record.metrics)
    return record.metrics
