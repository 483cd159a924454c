"""What the stock Lightning loggers need to work offline, and nothing more.

- `LocalMLFlowLogger`: MLflow's local store is its SQLite database (`sqlite:///<logs>/mlflow/
  mlflow.db`, configs/logger/mlflow.yaml): the logger creates the database's folder (SQLite does
  not), and lets one process at a time create the database, whose first use runs MLflow's schema
  migrations (parallel sweep jobs would otherwise each migrate the same new file). A `file:` store
  still works: MLflow 3 keeps it "in maintenance mode" and refuses it unless
  `MLFLOW_ALLOW_FILE_STORE=true`, which this logger then sets for itself. Each MLflow run is named
  after its run directory.
- `OwnRunWandbLogger`: Lightning's `WandbLogger` reuses a W&B run still open in the process (it
  stays open after fit), so the second run of a process (a sweep job under the basic launcher, a
  test) would log into the first run's directory; this one finishes a leftover run first.

Both continue their tracker run when the run continues in its directory (`resume=<run_dir>`, a
SLURM requeue): the MLflow run id and the W&B run id are stored in `<run_dir>/loggers.json` at
first start (`expkit.loggers.run_ids`) and passed back (`run_id=`; `id=` with `resume="allow"`).
MLflow refuses to change a parameter of a run: a resumed run that types another value (e.g.
`trainer.max_epochs=30`) keeps the first value there, and says so.

mlflow and wandb are imported only when the logger that needs them is built.
"""

import fcntl
import os
import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import MLFlowLogger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from expkit.loggers.run_ids import store_id, stored_id, stored_ids
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///<path>` tracking URI, None for any other URI."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri[len(prefix) :].split("?", 1)[0])


@contextmanager
def _creating(database: Path | None) -> Iterator[None]:
    """One process at a time past this point for `database` (an OS lock on a file beside it,
    released when the process dies), its folder created first; nothing for other stores."""
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LocalMLFlowLogger(MLFlowLogger):
    """`MLFlowLogger` on a local SQLite database (`mlflow ui --backend-store-uri sqlite:///<db>`)
    or file store, run named by `run_dir`."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str = "lightning_logs",
        run_dir: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._database = sqlite_path(tracking_uri)
        # the run's tags=[a,b] list: MLflow tags are key-value, so each name becomes a tag "true"
        named: dict[str, Any] = (
            dict(tags) if isinstance(tags, Mapping) else dict.fromkeys(map(str, tags or ()), "true")
        )
        if run_dir:
            named.setdefault("run_dir", str(run_dir))
            run_name = run_name or "/".join(Path(run_dir).parts[-2:])
        self._run_dir = run_dir
        stored = stored_ids(run_dir).get("mlflow", {}) if run_dir else {}
        run_id = stored_id(run_dir, "mlflow", "run_id") if run_dir else None
        #: the run continues an MLflow run of this run directory (same tracking store)
        self._continues = bool(
            kwargs.get("run_id") is None and run_id and stored.get("tracking_uri") == tracking_uri
        )
        if self._continues:
            kwargs["run_id"] = run_id
        elif run_id and kwargs.get("run_id") is None:
            log.warning(
                "%s/loggers.json names MLflow run %s in %s, not in %s: starting a new MLflow run.",
                run_dir,
                run_id,
                stored.get("tracking_uri"),
                tracking_uri,
            )
        with _creating(self._database):  # MlflowClient opens (on first use: creates) the store
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name,
                tracking_uri=tracking_uri,
                tags=named or None,
                **kwargs,
            )

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MLflow client; the first time, the run: the stored one (marked running again) or
        a new one, whose id is then stored in the run directory."""
        if self._initialized:
            return self._mlflow_client
        if self._continues and not self._stored_run_exists():
            self._continues, self._run_id = False, None
        client = super().experiment
        if self._continues:
            client.update_run(self._run_id, status="RUNNING")
            log.info("MLflow: continuing run %s", self._run_id)
        elif self._run_dir:
            ids = {"run_id": self._run_id, "tracking_uri": self._tracking_uri}
            store_id(self._run_dir, "mlflow", {**ids, "experiment_id": self._experiment_id})
        return client

    def _stored_run_exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self._mlflow_client.get_run(str(self._run_id))
        except MlflowException as err:
            log.warning(
                "MLflow run %s of %s/loggers.json is not in %s (%s): starting a new MLflow run.",
                self._run_id,
                self._run_dir,
                self._tracking_uri,
                str(err).splitlines()[0],
            )
            return False
        if run.info.lifecycle_stage == "deleted":
            log.warning("MLflow run %s was deleted: starting a new MLflow run.", self._run_id)
            return False
        return True

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """As Lightning's; a continued run logs only the parameters its MLflow run lacks."""
        if not self._continues:
            super().log_hyperparams(params)
            return
        from lightning_fabric.utilities.logger import _convert_params, _flatten_dict

        flat = _flatten_dict(_convert_params(params))
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k, v in flat.items() if k in logged and logged[k] != str(v)[:250])
        if changed:
            log.warning(
                "MLflow keeps a run's parameters as first logged: %s stay %s (this attempt: %s).",
                ", ".join(changed),
                ", ".join(logged[k] for k in changed),
                ", ".join(str(flat[k]) for k in changed),
            )
        new = {k: v for k, v in flat.items() if k not in logged}
        if new:
            super().log_hyperparams(new)


def new_wandb_id() -> str:
    """A W&B run id as wandb draws them: 8 lowercase letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class OwnRunWandbLogger(WandbLogger):
    """`WandbLogger` that starts its own W&B run even when an earlier one is still open, and
    continues the W&B run of `run_dir` (its id in `run_dir/loggers.json`) when there is one."""

    def __init__(self, run_dir: str | None = None, **kwargs: Any) -> None:
        import wandb

        if wandb.run is not None:
            wandb.finish()
        if run_dir and kwargs.get("id") is None and kwargs.get("version") is None:
            stored = stored_id(run_dir, "wandb", "id")
            if stored:
                log.info("W&B: continuing run %s", stored)
            else:  # chosen and stored before the run starts: a kill in between loses nothing
                stored = new_wandb_id()
                store_id(run_dir, "wandb", {"id": stored, "project": kwargs.get("project")})
            kwargs["id"] = str(stored)
            kwargs.setdefault("resume", "allow")
        super().__init__(**kwargs)
