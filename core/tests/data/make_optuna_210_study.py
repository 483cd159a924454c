"""Writes the fixture `tests/data/optuna-2.10-study.db`: a study as the template's earlier stack
(optuna 2.10.1, SQLAlchemy 1.4, hydra-optuna-sweeper 1.3's distributions) stored it: study
`digits_optuna`, trials COMPLETE (3 epochs reported), PRUNED, FAIL (with a `fail_reason`).

Run once, with that stack, in a throwaway venv (not the template's):
    python -m venv /tmp/old-optuna-venv
    /tmp/old-optuna-venv/bin/pip install optuna==2.10.1 'sqlalchemy<2' 'alembic<1.14'
    /tmp/old-optuna-venv/bin/python tests/data/make_optuna_210_study.py tests/data/optuna-2.10-study.db
"""

import sqlite3
import sys

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    LogUniformDistribution,
    UniformDistribution,
)
from optuna.trial import TrialState

path = sys.argv[1]
study = optuna.create_study(
    study_name="digits_optuna",
    storage=f"sqlite:///{path}",
    direction="maximize",
    sampler=optuna.samplers.RandomSampler(seed=0),
)
space = {  # configs/hparams_search/digits_optuna.yaml, as hydra-optuna-sweeper 1.3 built it
    "optimizer.lr": LogUniformDistribution(0.0003, 0.03),
    "optimizer.weight_decay": LogUniformDistribution(1e-6, 1e-2),
    "data.batch_size": CategoricalDistribution([32, 64, 128]),
    "model.net.dropout": UniformDistribution(0.0, 0.3),
}
complete = study.ask(space)
for epoch, value in enumerate([0.8, 0.9, 0.93]):
    complete.report(value, epoch)
study.tell(complete, 0.93)
pruned = study.ask(space)
pruned.report(0.5, 0)
study.tell(pruned, state=TrialState.PRUNED)
failed = study.ask(space)
failed.set_system_attr("fail_reason", "RuntimeError: injected")
study.tell(failed, state=TrialState.FAIL)
with sqlite3.connect(path) as db:  # small pages: the file stays a few KB
    db.execute("PRAGMA page_size=512")
db.execute("VACUUM")
