"""Train a model and test its best checkpoint.

python src/train.py                                  # digits + MLP on CPU, under a minute
python src/train.py model=resnet data=cifar10 trainer=gpu
python src/train.py -m optimizer.lr=1e-3,1e-2 seed=1,2,3
python src/train.py resume=logs/train/runs/<run>        # continue a run in its own directory
python src/train.py cv.folds=5                        # 5-fold cross-validation
"""

from expkit.entry import start

start(__file__, "train", __name__)  # the project's root; `-sc …` answered before Lightning loads

import hydra
from omegaconf import DictConfig

from expkit.run.cli import run_entry_point
from expkit.sweeps.job import run_job
from expkit.tasks.train import train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job(train, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "train")
