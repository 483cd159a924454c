"""The few lines a run ends with, on the console and in its log: how it went and where everything is.

After a fit a user wants the final and best numbers, the files to open next and the command that
evaluates the best checkpoint, without digging through the run directory. Neither Lightning nor
Hydra prints such a summary; this module composes it from what the run already recorded
(`RunRecord`, the `History` rows, the trainer's checkpoint callback and loggers).
"""

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.utils.logging_utils import get_logger
from src.utils.run_artifacts import RESULTS_FILE, RunRecord

log = get_logger(__name__)

RULE = "─" * 78


def show_path(path: str | Path) -> str:
    """A path as the user can paste it: relative to the current directory when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command(script: str, *args: str) -> str:
    """`python src/<script>.py arg…`, each argument shell-quoted only where it needs it."""
    return " ".join(["python", f"src/{script}.py", *(shlex.quote(a) for a in args)])


def format_metrics(metrics: Mapping[str, Any], prefixes: Sequence[str] = ()) -> str:
    """`val/acc 0.9792 · val/loss 0.1619` (only keys starting with one of `prefixes`, if given)."""
    items = [
        f"{key} {_number(value, key)}"
        for key, value in sorted(metrics.items())
        if not prefixes or key.startswith(tuple(prefixes))
    ]
    return " · ".join(items) or "none"


def _number(value: Any, key: str = "") -> str:
    if isinstance(value, float) and math.isfinite(value):
        if key.endswith("count") and value.is_integer():
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def summary_lines(title: str, rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    body = [f"  {label.ljust(width)}  {value}" for label, value in rows if value]
    return "\n".join([f"{title} {RULE[len(title) + 1 :]}", *body, RULE])


def _history_rows(trainer: Any) -> list[dict[str, float]]:
    from src.callbacks.history import History

    for callback in getattr(trainer, "callbacks", []):
        if isinstance(callback, History):
            return callback.rows
    return []


def _best_row(rows: list[dict[str, float]], monitor: str, mode: str) -> dict[str, float] | None:
    scored = [row for row in rows if not math.isnan(row.get(monitor, math.nan))]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda row: row[monitor])


def _epoch_metrics(row: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in row.items() if "/" in k and not k.endswith("_best")}


def _logger_lines(trainer: Any) -> list[tuple[str, str]]:
    """Where each logger wrote, as the command that opens it where there is one."""
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    lines = []
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, TensorBoardLogger):
            lines.append(("tensorboard", f"tensorboard --logdir {show_path(logger.log_dir)}"))
        elif isinstance(logger, CSVLogger):
            lines.append(("csv log", show_path(Path(logger.log_dir) / "metrics.csv")))
        elif isinstance(logger, MLFlowLogger):
            if logger.save_dir:  # a local file store, which the UI reads only when allowed to
                ui = f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {show_path(logger.save_dir)}"
            else:
                ui = f"mlflow ui --backend-store-uri {getattr(logger, '_tracking_uri', '')}"
            lines.append(("mlflow", ui))
        elif isinstance(logger, WandbLogger) and logger.save_dir:
            # the run's own directory (wandb/offline-run-<time>-<id>): wandb writes it in the
            # background, so it is asked for rather than looked for on disk
            run_dir = Path(logger.experiment.dir).parent if logger.experiment else None
            if run_dir is not None:
                lines.append(("wandb (offline)", f"wandb sync {show_path(run_dir)}"))
    return lines


def _artifact(output_dir: Path, name: str) -> str:
    path = output_dir / name
    return show_path(path) if path.exists() else ""


def train_summary(cfg: DictConfig, record: RunRecord, trainer: Any) -> str:
    """The end-of-training summary: final, best and test metrics, files, and the next commands."""
    out = Path(cfg.paths.output_dir)
    monitor = cfg.get("monitor") or {}
    metric, mode = monitor.get("metric"), monitor.get("mode", "max")
    rows = _history_rows(trainer)
    best = _best_row(rows, metric, mode) if metric else None
    final = rows[-1] if rows else {}
    final_metrics = (
        _epoch_metrics(final)
        if final
        else {k: v for k, v in record.metrics.items() if k.startswith(("train/", "val/"))}
    )
    ckpt = record.best_model_path or record.last_model_path
    tested = any(k.startswith("test/") for k in record.metrics)
    wall = f" in {record.wall_time_s:.1f} s" if record.wall_time_s is not None else ""
    table = [
        ("epochs", str(len(rows)) if rows else ""),
        (
            f"final (epoch {int(final['epoch'])})" if final else "final",
            format_metrics(final_metrics),
        ),
        (
            f"best (epoch {int(best['epoch'])})" if best else "",
            f"{format_metrics(_epoch_metrics(best))}   [by {metric}, {mode}]" if best else "",
        ),
        (
            "test (best ckpt)" if record.best_model_path else "test",
            format_metrics(record.metrics, ("test/",)) if tested else "",
        ),
        ("run directory", show_path(out)),
        ("best checkpoint", show_path(record.best_model_path) if record.best_model_path else ""),
        ("last checkpoint", show_path(record.last_model_path) if record.last_model_path else ""),
        ("curves", _artifact(out, "curves.png")),
        ("history", _artifact(out, "history.csv")),
        ("log", _artifact(out, f"{cfg.get('task_name', 'train')}.log")),
        ("results", _artifact(out, RESULTS_FILE)),
        *_logger_lines(trainer),
    ]
    if ckpt:
        ckpt_arg = f"ckpt_path={show_path(ckpt)}"
        table += [
            ("evaluate it", command("eval", ckpt_arg)),
            ("predict", command("predict", ckpt_arg, "input=test")),
            ("export", command("export", ckpt_arg)),
        ]
    else:
        table.append(
            ("checkpoint", "none saved (no ModelCheckpoint callback): nothing to evaluate")
        )
    return summary_lines(f"Run summary: {record.task} completed{wall}", table)


def eval_summary(cfg: DictConfig, record: RunRecord) -> str:
    """The end-of-eval summary: the checkpoint, its test metrics and where the results are."""
    out = Path(cfg.paths.output_dir)
    wall = f" in {record.wall_time_s:.1f} s" if record.wall_time_s is not None else ""
    return summary_lines(
        f"Eval summary: completed{wall}",
        [
            ("checkpoint", show_path(cfg.ckpt_path)),
            ("test", format_metrics(record.metrics, ("test/",))),
            ("run directory", show_path(out)),
            ("results", _artifact(out, RESULTS_FILE)),
            ("log", _artifact(out, f"{cfg.get('task_name', 'eval')}.log")),
        ],
    )


def log_summary(text: str) -> None:
    """One log record (console and `<task>.log`), so the summary stays in one piece."""
    log.info("\n%s", text)
