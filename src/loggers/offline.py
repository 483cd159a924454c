"""What the stock Lightning loggers need to work offline, and nothing more.

- `LocalMLFlowLogger`: MLflow 3 refuses its file store unless `MLFLOW_ALLOW_FILE_STORE=true` (the
  store is "in maintenance mode"); the file store is what works with no server, no account and no
  database migrations (a `sqlite:` store costs ~10 s of migrations on first use), so this logger
  opts in, for `file:` URIs only, and names each MLflow run after its run directory.
- `OwnRunWandbLogger`: Lightning's `WandbLogger` reuses a W&B run still open in the process (it
  stays open after fit), so the second run of a process (a sweep job under the basic launcher, a
  test) would log into the first run's directory; this one finishes a leftover run first.

mlflow and wandb are imported only when the logger that needs them is built.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger, WandbLogger


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
