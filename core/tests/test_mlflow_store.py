"""MLflow's default store, its SQLite database in the logs: parallel jobs (joblib, a GPU pool)
that start with no database yet create it once, one after another, and each gets its run."""

import multiprocessing
from pathlib import Path

import pytest


def _start_run(database: str, run_dir: str) -> str:
    from expkit.loggers.offline import LocalMLFlowLogger

    logger = LocalMLFlowLogger(tracking_uri=f"sqlite:///{database}", run_dir=run_dir)
    logger.experiment  # noqa: B018 (creates the run, and the database the first time)
    return str(logger.run_id)


@pytest.mark.slow  # two processes import mlflow and one migrates a new database
def test_parallel_loggers_create_the_mlflow_database_once(tmp_path):
    from mlflow.tracking import MlflowClient

    database = tmp_path / "logs" / "mlflow" / "mlflow.db"  # its folder does not exist yet
    runs = [str(tmp_path / f"run{i}") for i in range(2)]
    for run in runs:
        Path(run).mkdir()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        run_ids = pool.starmap(_start_run, [(str(database), run) for run in runs])
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("lightning_logs")
    found = {
        r.info.run_id: r.data.tags["run_dir"]
        for r in client.search_runs([experiment.experiment_id])
    }
    assert found == dict(zip(run_ids, runs, strict=True))
