"""What the stock Lightning loggers need to work offline and show everything, and nothing more.

- `LocalMLFlowLogger`: MLflow 3 refuses its file store unless `MLFLOW_ALLOW_FILE_STORE=true` (the
  store is "in maintenance mode"); the file store is what works with no server, no account and no
  database migrations (a `sqlite:` store costs ~10 s of migrations on first use), so this logger
  opts in, for `file:` URIs only, and names each MLflow run after its run directory.
- `OwnRunWandbLogger`: Lightning's `WandbLogger` reuses a W&B run still open in the process (it
  stays open after fit), so the second run of a process (a sweep job under the basic launcher, a
  test) would log into the first run's directory; this one finishes a leftover run first.
- `log_tensorboard_hparams`: TensorBoard's HPARAMS tab only lists a run whose event file holds an
  hparams *session* naming the metrics to show. `TensorBoardLogger.log_hyperparams` writes that
  session only together with a metric value (its `hp_metric` placeholder, which the config turns
  off because it plots a fake -1), so the session is written here, naming the metrics the model
  logs; TensorBoard then shows each run's latest value of each.

mlflow, wandb and tensorboard are imported only when the logger that needs them is built.
"""

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from src.utils.logging_utils import get_logger

log = get_logger(__name__)


class LocalMLFlowLogger(MLFlowLogger):
    """`MLFlowLogger` on a local file store (`mlflow ui --backend-store-uri <dir>`), run named by `run_dir`."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str = "lightning_logs",
        run_dir: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tags = dict(tags or {})
        if run_dir:
            tags.setdefault("run_dir", str(run_dir))
            run_name = run_name or "/".join(Path(run_dir).parts[-2:])
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=tracking_uri,
            tags=tags or None,
            **kwargs,
        )


class OwnRunWandbLogger(WandbLogger):
    """`WandbLogger` that starts its own W&B run even when an earlier one is still open."""

    def __init__(self, **kwargs: Any) -> None:
        import wandb

        if wandb.run is not None:
            wandb.finish()
        super().__init__(**kwargs)


def flatten_params(
    params: Mapping[str, Any], prefix: str = ""
) -> dict[str, bool | int | float | str]:
    """Nested config → `{"a/b": value}` with values TensorBoard's HPARAMS table can show."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # lists, None: shown as text
            flat[name] = str(value)
    return flat


@rank_zero_only
def log_tensorboard_hparams(logger: Any, params: Mapping[str, Any], metrics: Iterable[str]) -> None:
    """Write the hparams session (params + the metric tags to show) into the logger's event file."""
    from torch.utils.tensorboard.summary import hparams

    metric_names = sorted(set(metrics))
    if not metric_names:
        return
    # the values are never written: TensorBoard reads each metric's latest scalar from the run
    experiment, session_start, session_end = hparams(
        flatten_params(params), dict.fromkeys(metric_names, 0.0)
    )
    writer = logger.experiment._get_file_writer()  # what TensorBoardLogger itself writes through
    for summary in (experiment, session_start, session_end):
        writer.add_summary(summary)
