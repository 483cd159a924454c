"""Predict with a checkpoint: `python src/predict.py ckpt_path=PATH [input=predict|test|val|train|DIR|IMAGE|FILE.pt]`.

Writes `predictions.csv` (and `predictions.pt` for outputs too large for columns) into a new run
directory; any LightningModule (its own `predict_step`).
"""

from expkit.entry import start

start(__file__, "predict", __name__)  # the project's root; `-sc …` answered before Lightning loads

import hydra
from omegaconf import DictConfig

from expkit.run.cli import run_entry_point
from expkit.sweeps.job import run_job
from expkit.tasks.predict import predict


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    return run_job(predict, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "predict")
