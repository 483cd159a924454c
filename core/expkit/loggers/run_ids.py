"""`<run_dir>/loggers.json`: the MLflow run id and W&B run id of a run directory, kept so that a
continued run (`resume=<run_dir>`, a SLURM requeue) logs into the same tracker run.

Written when the tracker run is created (MLflow) or chosen (W&B, before it starts), atomically
(temp file, fsync, rename: a kill leaves the previous file or none, never half of one), by rank 0
only, and only by the process holding the run directory's lock (loggers are built inside
`open_run`: a second process refused by the lock never gets here). An unreadable file is
reported and treated as absent: the run then starts new tracker runs instead of failing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities.rank_zero import rank_zero_only

from expkit.utils.atomic import atomic_write_text
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

RUN_IDS_FILE = "loggers.json"


def stored_id(run_dir: str | Path, logger: str, key: str) -> str | None:
    """`loggers.json`'s `logger.key` when it looks like a tracker's run id (letters, digits, `_`,
    `-`); a value of another shape is reported and ignored (a new tracker run starts)."""
    value = stored_ids(run_dir).get(logger, {}).get(key)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"[\w-]{1,128}", value):
        return value
    log.warning(
        "%s/%s: %s.%s=%r is not a run id: ignored.", run_dir, RUN_IDS_FILE, logger, key, value
    )
    return None


def stored_ids(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """What `run_dir/loggers.json` holds (`{"mlflow": {...}, "wandb": {...}}`), or {}."""
    path = Path(run_dir) / RUN_IDS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("%s is unreadable (%s): the loggers start new runs.", path, err)
        return {}
    if not isinstance(data, dict):
        log.warning("%s does not hold a JSON object: the loggers start new runs.", path)
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


@rank_zero_only
def store_id(run_dir: str | Path, logger: str, ids: dict[str, Any]) -> None:
    """Record `ids` for `logger` in `run_dir/loggers.json`, keeping the other loggers' entries."""
    data = stored_ids(run_dir)
    data[logger] = ids
    path = Path(run_dir) / RUN_IDS_FILE
    try:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as err:  # e.g. a full disk: the run goes on; a resume would start a new run
        log.error(
            "Could not write %s (%s): a resumed run will log to a new %s run.", path, err, logger
        )
