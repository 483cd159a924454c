"""A study's database: one written by the old stack (optuna 2.10, SQLAlchemy 1.4) is refused with
the one command that upgrades it, and resumes after that command; a study the sweeper wrote opens
with Optuna's storage API and in optuna-dashboard, as `optuna-dashboard <storage>` reads it.

`core/tests/data/optuna-2.10-study.db` was written once by optuna 2.10.1
(`core/tests/data/make_optuna_210_study.py`): study `digits_optuna`, trials COMPLETE, PRUNED, FAIL.
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

from expkit.callbacks.optuna_pruning import TrialPruned
from helpers import TESTS
from hydra_plugins.expkit_optuna_sweeper._storage import StorageUpgradeNeeded
from hydra_plugins.expkit_optuna_sweeper.resumable_optuna_sweeper import ResumableOptunaSweeper
from test_optuna import StandInLauncher

OLD_STUDY = TESTS / "data" / "optuna-2.10-study.db"
#: digits_optuna's search space (configs/hparams_search/digits_optuna.yaml)
PARAMS = {
    "optimizer.lr": "tag(log, interval(0.0003, 0.03))",
    "optimizer.weight_decay": "tag(log, interval(1e-6, 1e-2))",
    "data.batch_size": "choice(32, 64, 128)",
    "model.net.dropout": "interval(0.0, 0.3)",
}


#: what the `optuna` console script runs
CLI = "import sys; from optuna.cli import main; sys.exit(main())"


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


@pytest.mark.slow  # the `optuna` command line: a process of its own
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
    # (optuna's console script, or its module where the venv has no script of its own: a fresh venv
    # that sees another's packages)
    script = Path(sys.executable).parent / "optuna"
    optuna_cli = [str(script)] if script.exists() else [sys.executable, "-c", CLI]
    subprocess.run([*optuna_cli, "storage", "upgrade", "--storage", storage], check=True)
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


def test_bad_search_spaces_get_one_line(tmp_path):
    from functools import partial

    from hydra_plugins.expkit_optuna_sweeper._space import SearchSpaceError

    sweeper = sweeper_on(tmp_path, f"sqlite:///{tmp_path}/optuna.db", 2, [])
    sweeper.sweeper.params = OmegaConf.create({"x": "interval(0.0, 1.0)"})
    sweeper.sweeper.sampler = partial(optuna.samplers.GridSampler)
    message = r"x: the grid sampler needs discrete values, not FloatDistribution.*Allowed: choice"
    with pytest.raises(SearchSpaceError, match=message) as refused:
        sweeper.sweep([])
    assert "\n" not in str(refused.value)
    assert sweeper.sweeper.launcher.calls == []  # nothing ran


def test_bad_legacy_search_space_gets_one_line():
    from hydra_plugins.expkit_optuna_sweeper._space import SearchSpaceError, from_legacy_config

    with pytest.raises(SearchSpaceError, match="type='normal' is not a distribution type"):
        from_legacy_config({"x": {"type": "normal", "low": 0, "high": 1}})
    space = from_legacy_config({"n": {"type": "int", "low": 1, "high": 8, "log": True}})
    assert space["n"] == optuna.distributions.IntDistribution(1, 8, log=True)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"direction": "up"}, "hydra.sweeper.direction=up is not allowed. Allowed: minimize"),
        ({"max_failure_rate": 1.5}, "max_failure_rate=1.5 is not allowed. Allowed: a share"),
        ({"n_jobs": 0}, "hydra.sweeper.n_jobs=0 is not allowed. Allowed: >= 1"),
    ],
)
def test_bad_sweeper_settings_get_one_line(setting, message):
    from hydra_plugins.expkit_optuna_sweeper._impl import SweeperConfigError

    settings = dict(
        sampler=None,
        direction="maximize",
        storage=None,
        study_name="s",
        n_trials=2,
        n_jobs=1,
        max_failure_rate=0.0,
    )
    with pytest.raises(SweeperConfigError, match=message):
        ResumableOptunaSweeper(**{**settings, **setting})


def test_the_search_space_keeps_the_meaning_of_hydra_optuna_sweeper_1_3():
    """The distributions hydra-optuna-sweeper 1.3 made of each sweep, in Optuna's current
    classes: the same space a study stored by it has (range includes its stop, as it did)."""
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution as Float
    from optuna.distributions import IntDistribution as Int

    from hydra_plugins.expkit_optuna_sweeper._space import from_overrides, grid

    space, fixed = from_overrides(
        [
            "a=interval(0.1, 1.0)",
            "b=tag(log, interval(1e-4, 1e-1))",
            "c=int(interval(1, 10))",
            "d=tag(log, int(interval(1, 64)))",
            "k=interval(1, 10)",
            "e=choice(32, 64, 128)",
            "f=range(1, 5)",
            "g=range(0.0, 1.0, 0.25)",
            "h=choice(adam, sgd)",
            "i=7",
            "j=choice([256,128],[512,256,128])",
        ]
    )
    assert space == {
        "a": Float(0.1, 1.0),
        "b": Float(1e-4, 1e-1, log=True),
        "c": Int(1, 10),
        "d": Int(1, 64, log=True),
        "k": Float(1.0, 10.0),  # Hydra's interval is a float one unless cast
        "e": Cat([32, 64, 128]),
        "f": Int(1, 5),
        "g": Float(0.0, 1.0, step=0.25),
        "h": Cat(["adam", "sgd"]),
        "j": Cat(["[256,128]", "[512,256,128]"]),  # the override's text: Hydra parses it back
    }
    assert fixed == {"i": "7"}
    assert grid({"e": space["e"], "f": space["f"], "g": space["g"]}) == {
        "e": [32, 64, 128],
        "f": [1, 2, 3, 4],
        "g": [0.0, 0.25, 0.5, 0.75],
    }
