"""Train a model and test its best checkpoint.

python src/train.py                                  # digits + MLP on CPU, under a minute
python src/train.py model=resnet data=cifar10 trainer=gpu
python src/train.py -m optimizer.lr=1e-3,1e-2 seed=1,2,3
python src/train.py resume=logs/train/runs/<run>        # continue a run in its own directory
"""

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import src.utils  # noqa: F401  (registers the config resolvers)
from src.sweeps.job import run_task
from src.utils.cli import run_entry_point
from src.utils.finite import fail_if_diverged
from src.utils.logging_utils import get_logger
from src.utils.resume import checkpoint_to_resume, checkpoints_in_run
from src.utils.run_artifacts import record_run, to_floats
from src.utils.run_setup import (
    build_trainer,
    check_monitored_metrics,
    log_hyperparameters,
    prepare_run,
)
from src.utils.run_summary import log_summary, train_summary
from src.utils.validate import check_data_available, validate_config

log = get_logger(__name__)


def test_best_checkpoint(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule
) -> dict[str, float]:
    """Reload the best checkpoint (not the last weights) and test it."""
    callback = trainer.checkpoint_callback
    ckpt_path = getattr(callback, "best_model_path", "") or None
    if ckpt_path is None:
        log.warning(
            "No best checkpoint (no ModelCheckpoint callback?): testing the current weights."
        )
    results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return to_floats(results[0]) if results else {}


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, write the run's artifacts; return every final metric."""
    with record_run("train", cfg.paths.output_dir) as record:
        validate_config(cfg)
        ckpt_path = checkpoint_to_resume(cfg)
        record.extra["resumed_from"] = ckpt_path
        prepare_run(cfg)
        datamodule = instantiate(cfg.data, _convert_="all")
        check_data_available(datamodule)
        model = instantiate(cfg.model, _convert_="all")
        trainer = build_trainer(cfg, run_config=OmegaConf.to_container(cfg, resolve=True))
        check_monitored_metrics(cfg, trainer, model)
        log_hyperparameters(cfg, trainer, model)

        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        record.add_metrics({k: v for k, v in trainer.callback_metrics.items() if "/" in k})
        fail_if_diverged(record.metrics, epochs=trainer.current_epoch)
        if cfg.get("test", True):
            record.add_metrics(test_best_checkpoint(trainer, model, datamodule))

        callback = trainer.checkpoint_callback
        record.best_model_path = getattr(callback, "best_model_path", None) or None
        record.last_model_path = next(map(str, checkpoints_in_run(cfg.paths.output_dir)), None)
    log_summary(train_summary(cfg, record, trainer))
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # in a multirun: a failed job returns NaN and the sweep goes on; DDP ranks stay in the job's dir
    return run_task(train, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "train", resume=True)
