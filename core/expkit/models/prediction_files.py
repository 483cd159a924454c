"""What predict writes, and the one rule that decides when predictions are read as classes.

The rule (explicit, never a guess from the outputs' shape):
- **classifier**: the module declares its classes, by a `num_classes` hyperparameter (as
  `src.models.classifier.Classifier` does) or a `class_names` attribute, and the datamodule does
  not declare another task (its `task` attribute, where it has one, is `classification`). Its
  `predict_step` must then return one tensor N×num_classes: probabilities as they are, or logits
  (any row not already a probability distribution), which are softmaxed. The table gets
  `predicted`, `class`, `probability`, `prob_0…`, and with targets `predict/acc`. A declared
  classifier whose output is anything else is written as plain outputs, with a warning.
- **regression**: the datamodule declares `task = "regression"` (`data=csv data.task=regression`)
  and `predict_step` returns one value per sample: `predicted`, and with targets `predict/mse`.
- **outputs**: every other module (an autoencoder, a GAN...): each output as it is returned. A
  value per sample is one column (`<name>`); a 1-D row of at most `max_columns` values is columns
  `<name>_0…`; anything larger (an image, a sequence) makes predict also write a tensor file
  (`predictions.pt`: `{"ids": [...], "outputs": {name: N×…}}`, every output in full, loadable
  with `torch.load(path, weights_only=True)`). No softmax, no classes, no accuracy.

Tables are CSV, or Parquet when `output_file` ends in `.parquet` (needs pyarrow or fastparquet).
Every file is written whole or not at all (`expkit.utils.atomic`).
"""

import csv
import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from expkit.errors import ConfigError
from expkit.models.predictions import Predictions
from expkit.utils.atomic import atomic_open, atomic_write_bytes
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

CLASSIFIER, REGRESSION, OUTPUTS = "classifier", "regression", "outputs"
TABLE_SUFFIXES = (".csv", ".parquet")


def check_output_file(path: Path) -> None:
    """`output_file` checked before any work: a table format that can be written here."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(
            f"output_file={str(path)!r}: unknown table format {suffix!r}; allowed: a name ending "
            f"in {' or '.join(TABLE_SUFFIXES)}."
        )
    if suffix == ".parquet" and not any(
        importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")
    ):
        raise ConfigError(
            f"output_file={str(path)!r}: Parquet needs pyarrow (pip install pyarrow); allowed "
            "here: a .csv name."
        )


def declared_classes(model: Any, datamodule: Any) -> list[str] | None:
    """The class names when the module declares itself a classifier (the rule above), else None."""
    if getattr(datamodule, "task", "classification") != "classification":
        return None
    names = getattr(model, "class_names", None)
    hparams = getattr(model, "hparams", {}) or {}
    count = hparams.get("num_classes") if hasattr(hparams, "get") else None
    if names:
        return [str(n) for n in names]
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        data_names = list(getattr(datamodule, "class_names", None) or [])
        return (
            [str(n) for n in data_names]
            if len(data_names) == count
            else [str(i) for i in range(count)]
        )
    return None


def prediction_kind(model: Any, datamodule: Any, predictions: Predictions) -> str:
    """`classifier`, `regression` or `outputs` (the rule above)."""
    outputs = predictions.outputs
    (only,) = outputs.values() if len(outputs) == 1 else (None,)
    classes = declared_classes(model, datamodule)
    if classes is not None:
        if only is not None and only.dim() == 2 and only.shape[1] == len(classes):
            return CLASSIFIER
        shapes = {k: list(v.shape) for k, v in outputs.items()}
        log.warning(
            "%s declares %d classes, but its predict_step returned %s, not one N×%d tensor: "
            "written as plain outputs, without classes or accuracy.",
            type(model).__name__,
            len(classes),
            shapes,
            len(classes),
        )
        return OUTPUTS
    regression = getattr(datamodule, "task", None) == "regression"
    if regression and only is not None and only.reshape(len(only), -1).shape[1] == 1:
        return REGRESSION
    return OUTPUTS


def class_probabilities(scores: Tensor) -> Tensor:
    """Rows that are already probability distributions as they are; logits softmaxed."""
    scores = scores.float()
    is_distribution = bool(
        ((scores >= 0) & (scores <= 1)).all()
        and torch.allclose(scores.sum(dim=1), torch.ones(1), atol=1e-4)
    )
    return scores if is_distribution else scores.softmax(dim=1)


# ---- writing ------------------------------------------------------------------------------------
def write_table(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """CSV, or Parquet for a `.parquet` name (bytes built in memory, then written atomically)."""
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        buffer = io.BytesIO()
        pd.DataFrame(rows, columns=header).to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
        return
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _number(value: float) -> str:
    return f"{value:.6g}"


def write_classes(
    path: Path, predictions: Predictions, probs: Tensor, names: Sequence[str]
) -> None:
    """One row per input: `id, predicted, class, probability, [label,] prob_0 … prob_{K-1}`."""
    confidence, predicted = probs.max(dim=1)
    labels = predictions.targets
    header = ["id", "predicted", "class", "probability", *(["label"] if labels is not None else [])]
    header += [f"prob_{k}" for k in range(probs.shape[1])]
    rows = []
    for i, id_ in enumerate(predictions.ids):
        k = int(predicted[i])
        label = [int(labels[i])] if labels is not None else []
        row = [id_, k, names[k], f"{float(confidence[i]):.6f}", *label]
        rows.append(row + [f"{p:.6f}" for p in probs[i].tolist()])
    write_table(path, header, rows)


def write_values(path: Path, predictions: Predictions, values: Tensor) -> None:
    """One row per input of a regression: `id, predicted, [label]`."""
    labels = predictions.targets
    rows = [
        [
            id_,
            _number(float(values[i])),
            *([_number(float(labels[i]))] if labels is not None else []),
        ]
        for i, id_ in enumerate(predictions.ids)
    ]
    write_table(path, ["id", "predicted", *(["label"] if labels is not None else [])], rows)


def write_outputs(path: Path, predictions: Predictions, max_columns: int) -> Path | None:
    """Columns for the outputs that fit (see the rule); the tensor file when any does not.
    Returns the tensor file's path, or None."""
    columns: dict[str, list[str]] = {}
    too_big = []
    for name, value in predictions.outputs.items():
        if value.dim() <= 1:
            columns[name] = [name]
        elif value.dim() == 2 and value.shape[1] <= max_columns:
            columns[name] = [f"{name}_{j}" for j in range(value.shape[1])]
        else:
            too_big.append(name)
    labels = predictions.targets
    header = ["id", *(["label"] if labels is not None else [])]
    header += [c for names in columns.values() for c in names]
    flat = {k: _flat_rows(predictions.outputs[k]) for k in columns}
    rows = []
    for i, id_ in enumerate(predictions.ids):
        row: list[Any] = [id_, *([_cell(labels[i])] if labels is not None else [])]
        for name in columns:
            row += [_cell(v) for v in flat[name][i]]
        rows.append(row)
    write_table(path, header, rows)
    if not too_big:
        return None
    tensor_path = path.with_suffix(".pt")
    buffer = io.BytesIO()  # torch.save raises RuntimeError on a full disk: write bytes instead
    torch.save({"ids": list(predictions.ids), "outputs": dict(predictions.outputs)}, buffer)
    atomic_write_bytes(tensor_path, buffer.getvalue())
    log.info(
        "outputs %s hold more than %d values per sample: all outputs in %s",
        too_big,
        max_columns,
        tensor_path,
    )
    return tensor_path


def _flat_rows(value: Tensor) -> Tensor:
    return value.reshape(len(value), -1) if value.dim() > 1 else value.reshape(-1, 1)


def _cell(value: Tensor) -> Any:
    if value.dtype == torch.bool:
        return int(value)
    if value.is_complex():
        return str(complex(value))
    return _number(float(value)) if value.is_floating_point() else int(value)
