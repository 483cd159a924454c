"""Test a checkpoint: `python src/eval.py ckpt_path=PATH` needs nothing else.

The checkpoint carries its run's resolved config, so the same model and data values are rebuilt
(trainer, callbacks, loggers and paths are this clone's); overrides typed here
(`data.batch_size=256`, `trainer=gpu`) apply on top.
"""

from expkit.entry import start

start(__file__, "eval", __name__)  # the project's root; `-sc …` answered before Lightning loads

import hydra
from omegaconf import DictConfig

from expkit.run.cli import run_entry_point
from expkit.sweeps.job import run_job
from expkit.tasks.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_job(evaluate, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "eval")
