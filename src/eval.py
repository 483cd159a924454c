"""Test a checkpoint: `python src/eval.py ckpt_path=PATH` needs nothing else.

The checkpoint carries its run's resolved config, so the same data, model and trainer are rebuilt;
overrides typed here (`data.batch_size=256`, `trainer=gpu`) apply on top.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import src.utils  # noqa: F401  (registers the config resolvers)
from src.utils.cli import run_entry_point
from src.utils.logging_utils import get_logger
from src.utils.restore import restore_run
from src.utils.run_artifacts import record_run, to_floats
from src.utils.run_setup import build_trainer
from src.utils.run_summary import eval_summary, log_summary

log = get_logger(__name__)


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Rebuild the checkpoint's run, test it, write `results.json`; return the test metrics."""
    with record_run("eval", cfg.paths.output_dir) as record:
        cfg, datamodule, model = restore_run(cfg, overrides)  # the checkpoint's weights, loaded
        trainer = build_trainer(cfg)
        results = trainer.test(model, datamodule=datamodule)
        record.add_metrics(to_floats(results[0]) if results else {})
        record.best_model_path = str(cfg.ckpt_path)
    log_summary(eval_summary(cfg, record))
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    run_entry_point(main, "eval")
