"""The run's choices and model size, sent to every logger (TensorBoard's HPARAMS tab included).

TensorBoard's HPARAMS tab only lists a run whose event file holds an hparams *session* naming the
metrics to show. `TensorBoardLogger.log_hyperparams` writes that session only together with a
metric value (its `hp_metric` placeholder, which the config turns off because it plots a fake -1),
so the session is written here, naming the metrics the model logs; TensorBoard then shows each
run's latest value of each.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

#: the config keys every logger records as hyperparameters
HPARAM_KEYS = ("data", "model", "optimizer", "scheduler", "trainer", "seed")


def flatten_params(
    params: Mapping[str, Any], prefix: str = "", sep: str = "/"
) -> dict[str, bool | int | float | str]:
    """Nested config → `{"a/b": value}` with values TensorBoard's HPARAMS table can show."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}{sep}", sep))
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


def log_hyperparameters(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: pl.LightningModule,
    logged: Sequence[str] | None = None,
) -> None:
    """Send the run's choices and the model size to every logger: only the values the run used
    (a group the model's config does not take, such as `optimizer` for a module that builds its
    own, is left out). `logged`: the metrics the module logs, when known."""
    if not trainer.loggers:
        return
    from expkit.run.module_checks import ignored_groups

    unused = set(ignored_groups(cfg))
    hparams = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        if isinstance(cfg[k], DictConfig)
        else cfg[k]
        for k in HPARAM_KEYS
        if k in cfg and k not in unused
    }
    if "tags" in cfg:  # train's tags=[...], as one text value (TensorBoard shows scalars only)
        hparams["tags"] = ",".join(map(str, cfg.tags or []))
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    metrics = (
        logged
        or getattr(model, "LOGGED_METRICS", None)
        or [(cfg.get("monitor") or {}).get("metric")]
    )
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            # MLflow lists params by flat name: the dotted key a user types (`optimizer.lr`),
            # where Lightning would join them with "/"
            flat = flatten_params(hparams, sep=".")
            logger.log_hyperparams({k.replace("/", "."): v for k, v in flat.items()})
        else:
            logger.log_hyperparams(hparams)
        if isinstance(logger, TensorBoardLogger):
            log_tensorboard_hparams(logger, hparams, [m for m in metrics if m])
