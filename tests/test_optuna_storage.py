"""A study's database: one written by the old stack (optuna 2.10, SQLAlchemy 1.4) is refused with
the one command that upgrades it, and resumes after that command; a study the sweeper wrote opens
with Optuna's storage API and in optuna-dashboard, as `optuna-dashboard <storage>` reads it.

`tests/data/optuna-2.10-study.db` was written once by optuna 2.10.1
(`tests/data/make_optuna_210_study.py`): study `digits_optuna`, trials COMPLETE, PRUNED, FAIL.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.resumable_optuna_sweeper._storage import StorageUpgradeNeeded
from hydra_plugins.resumable_optuna_sweeper.resumable_optuna_sweeper import ResumableOptunaSweeper
from src.callbacks.optuna_pruning import TrialPruned
from tests.helpers import ROOT
from tests.test_optuna import StandInLauncher

OLD_STUDY = ROOT / "tests" / "data" / "optuna-2.10-study.db"
#: digits_optuna's search space (configs/hparams_search/digits_optuna.yaml)
PARAMS = {
    "optimizer.lr": "tag(log, interval(0.0003, 0.03))",
    "optimizer.weight_decay": "tag(log, interval(1e-6, 1e-2))",
    "data.batch_size": "choice(32, 64, 128)",
    "model.net.dropout": "interval(0.0, 0.3)",
}


def sweeper_on(sweep: Path, storage: str, n_trials: int, batches: list) -> ResumableOptunaSweeper:
    """The sweeper of hparams_search=digits_optuna on `storage`, its jobs played by `batches`."""
    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.TPESampler(seed=1234, n_startup_trials=5),
        direction="maximize",
        storage=storage,
        study_name="digits_optuna",
        n_trials=n_trials,
        n_jobs=1,
        max_failure_rate=1.0,
        params=OmegaConf.create(PARAMS),
        pruner="median",
    )
    sweeper.config = sweeper.sweeper.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}}}
    )
    sweeper.sweeper.launcher = StandInLauncher(batches, sweep)
    return sweeper


def test_an_optuna_2_study_is_refused_with_the_upgrade_command_then_resumes(tmp_path):
    sweep = tmp_path / "digits_optuna"
    sweep.mkdir()
    database = sweep / "optuna.db"
    shutil.copyfile(OLD_STUDY, database)
    storage = f"sqlite:///{database}"
    sweeper = sweeper_on(sweep, storage, n_trials=5, batches=[[0.95], [0.9]])
    with pytest.raises(StorageUpgradeNeeded) as refused:
        sweeper.sweep([])
    message = str(refused.value)
    assert isinstance(refused.value, CompactHydraException) and "\n" not in message
    assert f"optuna storage upgrade --storage '{storage}'" in message
    assert "written by optuna 2.10.1" in message and optuna.__version__ in message
    assert database.read_bytes() == OLD_STUDY.read_bytes()  # refused before any write
    # the command the line names, as a user types it
    optuna_cli = Path(sys.executable).parent / "optuna"
    subprocess.run([optuna_cli, "storage", "upgrade", "--storage", storage], check=True)
    sweeper.sweep([])

    trials = optuna.load_study(study_name="digits_optuna", storage=storage).trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
    ] + [TrialState.COMPLETE] * 2
    assert trials[0].value == 0.93 and trials[0].intermediate_values == {0: 0.8, 1: 0.9, 2: 0.93}
    assert trials[2].system_attrs["fail_reason"] == "RuntimeError: injected"
    # the old trials' distributions and the new ones are the same space: one study
    assert trials[0].distributions.keys() == trials[4].distributions.keys() == PARAMS.keys()
    assert trials[4].distributions["optimizer.lr"] == optuna.distributions.FloatDistribution(
        0.0003, 0.03, log=True
    )
    # job k = trial k: the resumed jobs are 3 and 4
    assert [idx for idx, _ in sweeper.sweeper.launcher.calls] == [3, 4]
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == 0.95


def get_json(app, path: str) -> dict:
    """GET `path` from a WSGI app, as the dashboard's web page does."""
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:500])
    return json.loads(body)


def test_a_study_the_sweeper_wrote_opens_as_optuna_dashboard_reads_it(tmp_path):
    sweep = tmp_path / "digits_optuna"
    storage = f"sqlite:///{sweep}/optuna.db"
    pruned = TrialPruned("Trial 2 pruned at epoch 1: ...", 1, {"val/acc": 0.2})
    sweeper_on(sweep, storage, 4, [[0.9], [math.nan], [pruned], [0.8]]).sweep([])

    # Optuna's storage API, the calls the dashboard makes (`optuna-dashboard <storage>`)
    rdb = optuna.storages.RDBStorage(storage)
    (study,) = rdb.get_all_studies()
    assert study.study_name == "digits_optuna"
    trials = rdb.get_all_trials(study._study_id)
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.COMPLETE,
    ]
    assert optuna.load_study(study_name="digits_optuna", storage=rdb).best_value == 0.9

    # the dashboard itself, in-process: its app on the same storage URL, its JSON API
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    (listed,) = get_json(app, "/api/studies")["study_summaries"]
    assert listed["study_name"] == "digits_optuna"
    detail = get_json(app, f"/api/studies/{listed['study_id']}")
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Fail", "Pruned", "Complete"]
    assert [t["values"] for t in detail["best_trials"]] == [[0.9]]
