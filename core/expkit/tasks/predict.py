"""Predict with a checkpoint: `python src/predict.py ckpt_path=PATH [input=predict|test|val|train|DIR|IMAGE|FILE.pt]`.

Like eval, the checkpoint carries its run's config, so nothing else is needed. Any LightningModule:
Lightning's `trainer.predict` runs the module's own `predict_step` (Lightning's default calls
`forward`) on one device, on the datamodule's predict data (its `predict_dataloader`, else its
`test_dataloader`), another split, or files (`core/expkit/data/predict_inputs.py`). What it returns is
written as it is: one row per input in `predictions.csv` (plus `predictions.pt` for outputs too
large for columns); class columns and `predict/acc` only for a module that declares its classes
(the rule: `core/expkit/models/prediction_files.py`). `results.json` goes into the run directory.
"""

from pathlib import Path

from omegaconf import DictConfig

import expkit.utils  # noqa: F401  (registers the config resolvers)
from expkit.data.predict_inputs import load_inputs
from expkit.errors import ConfigError
from expkit.models.prediction_files import (
    CLASSIFIER,
    REGRESSION,
    check_output_file,
    class_probabilities,
    declared_classes,
    prediction_kind,
    write_classes,
    write_outputs,
    write_values,
)
from expkit.models.predictions import predict as run_predict
from expkit.run.lifecycle import open_run
from expkit.run.record import RunRecord
from expkit.run.restore import restore_run
from expkit.run.summary import format_metrics, show_path


def check_predict_config(cfg: DictConfig) -> None:
    """`output_file` and `max_columns`, before the checkpoint is read."""
    check_output_file(Path(cfg.output_file))
    limit = cfg.get("max_columns")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"max_columns={limit!r} is not allowed: an integer >= 1.")


def predict(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float | str]:
    """Rebuild the checkpoint's model, predict `cfg.input`, write the files; return count (and acc)."""
    with open_run("predict", cfg, model_path=str(cfg.ckpt_path)) as record:
        check_predict_config(cfg)
        cfg, datamodule, model = restore_run(cfg, overrides)
        inputs = load_inputs(cfg.input, datamodule)
        accelerator = str(cfg.trainer.get("accelerator", "auto"))
        batch_size = int(cfg.data.get("eval_batch_size") or cfg.data.get("batch_size") or 256)
        predictions = run_predict(model, datamodule, inputs, accelerator, batch_size)
        output_file = Path(cfg.output_file)
        kind = prediction_kind(model, datamodule, predictions)
        record.add_metrics({"predict/count": len(predictions.ids)})
        files = write_predictions(record, kind, model, datamodule, predictions, output_file, cfg)
        record.extra.update(
            input=str(cfg.input),
            input_kind=inputs.kind,
            split=inputs.name if inputs.kind == "split" else None,
            predicted_as=kind,
            outputs={k: list(v.shape[1:]) for k, v in predictions.outputs.items()},
            predictions=str(output_file),
            tensors=str(files[1]) if len(files) > 1 else None,
        )
        shown = (
            f"{inputs.name} ({inputs.kind})"
            if inputs.kind == "split"
            else f"{cfg.input} ({inputs.kind})"
        )
        record.summary_rows = [
            ("input", f"{shown}, {len(predictions.ids)} item(s)"),
            ("predicted as", kind),
            ("metrics", format_metrics(record.metrics)),
            *(("predictions", show_path(f)) for f in files),
        ]
    return record.metrics


def write_predictions(
    record: RunRecord, kind, model, datamodule, predictions, output_file, cfg
) -> list[Path]:
    """The table (and tensor file) for this kind of module, and its metrics against the targets."""
    targets = predictions.targets
    if kind == CLASSIFIER:
        (scores,) = predictions.outputs.values()
        probs = class_probabilities(scores)
        write_classes(output_file, predictions, probs, declared_classes(model, datamodule) or [])
        if targets is not None and not targets.is_floating_point():
            record.add_metrics({"predict/acc": (probs.argmax(dim=1) == targets).float().mean()})
        return [output_file]
    if kind == REGRESSION:
        (values,) = predictions.outputs.values()
        values = values.reshape(-1).float()
        write_values(output_file, predictions, values)
        if targets is not None:
            record.add_metrics({"predict/mse": (values - targets.float()).pow(2).mean()})
        return [output_file]
    tensor_file = write_outputs(output_file, predictions, int(cfg.max_columns))
    return [output_file, *([tensor_file] if tensor_file else [])]
