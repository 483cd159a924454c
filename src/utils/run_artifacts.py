"""What every run leaves in its directory besides Hydra's own files: the resolved config, the
printed config tree, and `results.json` (status, metrics, best checkpoint, wall time).

`results.json` is written whether the run completes or fails, with `status` saying which, so a
sweep summary can list failed jobs with their error and nothing half-done passes for a result.
"""

import json
import math
import signal
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from src.utils.logging_utils import get_logger

log = get_logger(__name__)

RESULTS_FILE = "results.json"


@dataclass
class RunRecord:
    """Filled in by the task function while it runs; written out when it ends."""

    task: str
    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    best_model_path: str | None = None
    last_model_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None  # set when the run ends

    def add_metrics(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            value = float(value)
            self.metrics[key] = value if math.isfinite(value) else str(value)


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's metric tensors → plain floats (what JSON, sweepers and pandas want)."""
    return {k: float(v) for k, v in metrics.items()}


@rank_zero_only
def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def _interruption(exc: BaseException) -> str | None:
    """'Ctrl+C' or 'SIGTERM' when `exc` is how Lightning passes one on, else None.

    Lightning turns Ctrl+C during `fit` into `sys.exit(1)` (raised while handling the
    KeyboardInterrupt) and SIGTERM into `SIGTERMException`, a `SystemExit` with no code.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    if isinstance(exc, SIGTERMException):
        return "SIGTERM"
    if isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)
    ):
        return "Ctrl+C"
    return None


@contextmanager
def record_run(task: str, output_dir: str | Path) -> Iterator[RunRecord]:
    """Time the run and write `results.json` at the end: `completed`, `failed` or `interrupted`.

    After SIGTERM the process exits with status 143 (128 + SIGTERM) rather than the 0 of
    Lightning's bare `SystemExit`, so a scheduler or shell sees that the run did not finish.
    A re-run of an existing run directory (`resume=`) that is rejected before training leaves that
    run's `results.json` as it was: the attempt changed nothing there.
    """
    record = RunRecord(task=task, output_dir=Path(output_dir))
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    status, error, keep_previous = "completed", None, False
    try:
        yield record
    except BaseException as exc:
        path = record.output_dir / RESULTS_FILE
        keep_previous = getattr(exc, "before_training", False) and path.is_file()
        interruption = _interruption(exc)
        status = "interrupted" if interruption else "failed"
        error = {
            "type": type(exc).__name__,
            "message": f"interrupted by {interruption}" if interruption else str(exc),
            "traceback": traceback.format_exc(limit=20),
        }
        if interruption == "SIGTERM":
            raise SystemExit(128 + signal.SIGTERM) from exc
        raise
    finally:
        record.wall_time_s = round(time.perf_counter() - t0, 3)
        payload = {
            "status": status,
            "task": task,
            "metrics": record.metrics,
            "best_model_path": record.best_model_path,
            "last_model_path": record.last_model_path,
            "wall_time_s": record.wall_time_s,
            "started_at": started,
            "output_dir": str(record.output_dir),
            **record.extra,
        }
        if error:
            payload["error"] = error
        if keep_previous:
            log.warning("Rejected before training: %s of this run left as it was.", RESULTS_FILE)
        else:
            _write_json(record.output_dir / RESULTS_FILE, payload)


@rank_zero_only
def save_resolved_config(cfg: DictConfig, output_dir: str | Path) -> None:
    """`config.yaml`: the config with every interpolation resolved, exactly as this run used it."""
    path = Path(output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)


@rank_zero_only
def print_config_tree(cfg: DictConfig, output_dir: str | Path, order: tuple[str, ...] = ()) -> None:
    """Print the composed config as a rich tree and save the same text as `config_tree.log`."""
    import rich
    import rich.syntax
    import rich.tree
    from rich.console import Console

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    rich.print(tree)
    path = Path(output_dir) / "config_tree.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        Console(file=f, width=120, color_system=None).print(tree)
