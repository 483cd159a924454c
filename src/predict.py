"""Predict with a checkpoint: `python src/predict.py ckpt_path=PATH input=test|DIR|IMAGE|FILE.pt`.

Like eval, the checkpoint carries its run's config, so nothing else is needed. Writes
`predictions.csv` (one row per input: id, predicted class, its probability, every class's
probability, and the true label for a split) and `results.json` into the run directory.
The model runs in plain torch (no Trainer): one process, rows in input order, whatever strategy
the checkpoint was trained with.
"""

from src.run.completion import answer_shell_completion

answer_shell_completion(
    __name__, "predict"
)  # `-sc …`: answered before the imports below load Lightning


import csv
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

import src.utils  # noqa: F401  (registers the config resolvers)
from src.checkpoints.restore import restore_run
from src.data.predict_inputs import PredictInputs, load_inputs
from src.run.cli import run_entry_point
from src.run.lifecycle import open_run
from src.run.summary import format_metrics, show_path
from src.sweeps.job import run_job
from src.utils.atomic import atomic_open
from src.utils.devices import torch_device


@torch.inference_mode()
def predict_outputs(
    model: torch.nn.Module,
    datamodule: Any,
    inputs: PredictInputs,
    batch_size: int,
    device: torch.device,
    regression: bool = False,
) -> torch.Tensor:
    """Softmax probabilities (N×classes), or predicted values (N×1) for a regression model, on the
    CPU; raw inputs are normalized as in training."""
    model = model.to(device)
    chunks = []
    for i in range(0, len(inputs.images), batch_size):
        x = inputs.images[i : i + batch_size].to(device)
        x = x.float() if inputs.normalized else datamodule.normalize(x)
        out = model(x)
        chunks.append((out if regression else out.softmax(dim=1)).cpu())
    return torch.cat(chunks)


def write_predictions(
    path: Path, inputs: PredictInputs, probs: torch.Tensor, class_names: list[str]
) -> None:
    """One row per input: `id, predicted, class, probability, [label,] prob_0 … prob_{K-1}`."""
    confidence, predicted = probs.max(dim=1)
    labels = inputs.labels
    header = ["id", "predicted", "class", "probability", *(["label"] if labels is not None else [])]
    header += [f"prob_{k}" for k in range(probs.shape[1])]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, id_ in enumerate(inputs.ids):
            k = int(predicted[i])
            name = class_names[k] if k < len(class_names) else str(k)
            label = [int(labels[i])] if labels is not None else []
            row = [id_, k, name, f"{float(confidence[i]):.6f}", *label]
            writer.writerow(row + [f"{p:.6f}" for p in probs[i].tolist()])


def write_values(path: Path, inputs: PredictInputs, values: torch.Tensor) -> None:
    """One row per input of a regression model: `id, predicted, [label]`."""
    labels = inputs.labels
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "predicted", *(["label"] if labels is not None else [])])
        for i, id_ in enumerate(inputs.ids):
            label = [f"{float(labels[i]):.6g}"] if labels is not None else []
            writer.writerow([id_, f"{float(values[i].reshape(-1)[0]):.6g}", *label])


def predict(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float | str]:
    """Rebuild the checkpoint's model, predict `cfg.input`, write the CSV; return count (and acc)."""
    with open_run("predict", cfg, model_path=str(cfg.ckpt_path)) as record:
        cfg, datamodule, model = restore_run(cfg, overrides)
        inputs = load_inputs(cfg.input, datamodule)
        device = torch_device(str(cfg.trainer.get("accelerator", "auto")))
        regression = getattr(datamodule, "task", "classification") == "regression"
        outputs = predict_outputs(
            model, datamodule, inputs, cfg.data.eval_batch_size, device, regression
        )
        output_file = Path(cfg.output_file)
        record.add_metrics({"predict/count": len(inputs.ids)})
        if regression:
            write_values(output_file, inputs, outputs)
            if inputs.labels is not None:
                error = outputs.reshape(-1) - inputs.labels.float().reshape(-1)
                record.add_metrics({"predict/mse": error.pow(2).mean()})
        else:
            names = list(getattr(datamodule, "class_names", []) or [])
            write_predictions(output_file, inputs, outputs, names)
            if inputs.labels is not None:
                accuracy = (outputs.argmax(dim=1) == inputs.labels).float().mean()
                record.add_metrics({"predict/acc": accuracy})
        record.extra.update(
            input=str(cfg.input), input_kind=inputs.kind, predictions=str(output_file)
        )
        record.summary_rows = [
            ("input", f"{cfg.input} ({inputs.kind}), {len(inputs.ids)} item(s)"),
            ("metrics", format_metrics(record.metrics)),
            ("predictions", show_path(output_file)),
        ]
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    return run_job(predict, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "predict")
