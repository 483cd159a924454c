"""The summary rows of a training run: final, best and test metrics, files, and the next commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.callbacks.history import History, best_row, metric_columns
from expkit.run.plan import Monitor
from expkit.run.record import RunRecord
from expkit.run.summary import command, existing, format_metrics, show_path
from expkit.utils.metric_names import epoch_values, stage_of
from omegaconf import DictConfig
from expkit.callbacks.lifecycle import each_callback


def _history(trainer: Any) -> History | None:
    callbacks = each_callback(getattr(trainer, "callbacks", []))
    return next((c for c in callbacks if isinstance(c, History)), None)


def fit_metrics(trainer: Any) -> dict[str, Any]:
    """Every metric logged at the end of fit, each once (`x_step`/`x_epoch` folded into `x`),
    whatever its name. A fit resumed after its last epoch (killed between the last checkpoint and
    the end of the run) trains nothing and logs nothing: then the last epoch's row of the
    history, which the checkpoint carried."""
    metrics = epoch_values(trainer.callback_metrics)
    history = _history(trainer)
    if metrics or history is None or not history.rows:
        return metrics
    return metric_columns(history.rows[-1])


def _row_metrics(row: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metric_columns(row).items() if not k.endswith("_best")}


def _tested(key: str) -> bool:
    return stage_of(key) == "test"


def logger_rows(trainer: Any) -> list[tuple[str, str]]:
    """Where each logger wrote, as the command that opens it where there is one."""
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    rows = []
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, TensorBoardLogger):
            rows.append(("tensorboard", f"tensorboard --logdir {show_path(logger.log_dir)}"))
        elif isinstance(logger, CSVLogger):
            rows.append(("csv log", show_path(Path(logger.log_dir) / "metrics.csv")))
        elif isinstance(logger, MLFlowLogger):
            uri = str(getattr(logger, "_tracking_uri", ""))
            if uri.startswith("sqlite:///"):  # the local database (the default)
                ui = (
                    f"mlflow ui --backend-store-uri sqlite:///{show_path(uri[len('sqlite:///') :])}"
                )
            elif logger.save_dir:  # a local file store, which the UI reads only when allowed to
                ui = f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {show_path(logger.save_dir)}"
            else:
                ui = f"mlflow ui --backend-store-uri {uri}"
            rows.append(("mlflow", ui))
        elif isinstance(logger, WandbLogger) and logger.save_dir:
            # the run's own directory (wandb/offline-run-<time>-<id>): wandb writes it in the
            # background, so it is asked for rather than looked for on disk
            run_dir = Path(logger.experiment.dir).parent if logger.experiment else None
            if run_dir is not None:
                rows.append(("wandb (offline)", f"wandb sync {show_path(run_dir)}"))
    return rows


def fit_rows(monitor: Monitor, record: RunRecord, trainer: Any) -> list[tuple[str, str]]:
    """The end-of-training summary's lines: epochs, final and best metrics, test, files, commands."""
    out = Path(record.output_dir)
    metric, mode = monitor.metric, monitor.mode
    history = _history(trainer)
    rows = history.rows if history is not None else []
    best = best_row(rows, metric, mode)
    final = rows[-1] if rows else {}
    final_metrics = (
        _row_metrics(final)
        if final
        else {k: v for k, v in record.metrics.items() if not _tested(k)}
    )
    tested = {k: v for k, v in record.metrics.items() if _tested(k)}
    table = [
        ("epochs", str(len({r.get("epoch") for r in rows})) if rows else ""),
        (
            f"final (epoch {int(final['epoch'])})" if final else "final",
            format_metrics(final_metrics),
        ),
        (
            f"best (epoch {int(best['epoch'])})" if best else "",
            f"{format_metrics(_row_metrics(best))}   [by {metric}, {mode}]" if best else "",
        ),
        (
            "test (best ckpt)" if record.best_model_path else "test",
            format_metrics(tested) if tested else "",
        ),
        ("best checkpoint", show_path(record.best_model_path) if record.best_model_path else ""),
        ("last checkpoint", show_path(record.last_model_path) if record.last_model_path else ""),
        ("curves", existing(out / "curves.png")),
        ("history", existing(out / "history.csv")),
        *logger_rows(trainer),
    ]
    ckpt = record.best_model_path or record.last_model_path
    if not ckpt:
        return [
            *table,
            ("checkpoint", f"none saved ({_why_no_checkpoint(trainer)}): nothing to evaluate"),
        ]
    ckpt_arg = f"ckpt_path={show_path(ckpt)}"
    return [
        *table,
        ("evaluate it", command("eval", ckpt_arg)),
        ("predict", command("predict", ckpt_arg, "input=test")),
        ("export", command("export", ckpt_arg)),
    ]


def _why_no_checkpoint(trainer: Any) -> str:
    if getattr(trainer, "fast_dev_run", False):
        return "trainer.fast_dev_run writes none"
    if getattr(trainer, "checkpoint_callback", None) is None:
        return "no ModelCheckpoint callback"
    return "ModelCheckpoint saved none"
