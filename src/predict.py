"""Predict with a checkpoint: `python src/predict.py ckpt_path=PATH input=test|DIR|IMAGE|FILE.pt`.

Like eval, the checkpoint carries its run's config, so nothing else is needed. Writes
`predictions.csv` (one row per input: id, predicted class, its probability, every class's
probability, and the true label for a split) and `results.json` into the run directory.
The model runs in plain torch (no Trainer): one process, rows in input order, whatever strategy
the checkpoint was trained with.
"""

import csv
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import src.utils  # noqa: F401  (registers the config resolvers)
from src.data.predict_inputs import PredictInputs, load_inputs
from src.utils.cli import run_entry_point
from src.utils.logging_utils import get_logger
from src.utils.restore import inference_device, restore_run
from src.utils.run_artifacts import record_run
from src.utils.run_summary import format_metrics, log_summary, show_path, summary_lines

log = get_logger(__name__)


@torch.inference_mode()
def predict_probabilities(
    model, datamodule, inputs: PredictInputs, batch_size: int, device
) -> torch.Tensor:
    """Softmax probabilities (N×classes, on the CPU); raw images are normalized as in training."""
    model = model.to(device)
    chunks = []
    for i in range(0, len(inputs.images), batch_size):
        x = inputs.images[i : i + batch_size].to(device)
        x = x.float() if inputs.normalized else datamodule.normalize(x)
        chunks.append(model(x).softmax(dim=1).cpu())
    return torch.cat(chunks)


def write_predictions(path: Path, inputs: PredictInputs, probs: torch.Tensor) -> None:
    """One row per input: `id, predicted, probability, [label,] prob_0 … prob_{K-1}`."""
    confidence, predicted = probs.max(dim=1)
    with_labels = inputs.labels is not None
    header = ["id", "predicted", "probability", *(["label"] if with_labels else [])]
    header += [f"prob_{k}" for k in range(probs.shape[1])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, id_ in enumerate(inputs.ids):
            label = [int(inputs.labels[i])] if with_labels else []
            row = [id_, int(predicted[i]), f"{float(confidence[i]):.6f}", *label]
            writer.writerow(row + [f"{p:.6f}" for p in probs[i].tolist()])


def predict(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Rebuild the checkpoint's model, predict `cfg.input`, write the CSV; return count (and acc)."""
    with record_run("predict", cfg.paths.output_dir) as record:
        cfg, datamodule, model = restore_run(cfg, overrides)
        inputs = load_inputs(cfg.input, datamodule)
        device = inference_device(cfg)
        probs = predict_probabilities(model, datamodule, inputs, cfg.data.eval_batch_size, device)
        output_file = Path(cfg.output_file)
        write_predictions(output_file, inputs, probs)
        record.add_metrics({"predict/count": len(inputs.ids)})
        if inputs.labels is not None:
            accuracy = (probs.argmax(dim=1) == inputs.labels).float().mean()
            record.add_metrics({"predict/acc": accuracy})
        record.best_model_path = str(cfg.ckpt_path)
        record.extra.update(
            input=str(cfg.input), input_kind=inputs.kind, predictions=str(output_file)
        )
    log_summary(
        summary_lines(
            f"Predict summary: {len(inputs.ids)} input(s)",
            [
                ("checkpoint", show_path(cfg.ckpt_path)),
                ("input", f"{cfg.input} ({inputs.kind})"),
                ("metrics", format_metrics(record.metrics)),
                ("predictions", show_path(output_file)),
                ("run directory", show_path(cfg.paths.output_dir)),
            ],
        )
    )
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg, overrides=list(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    run_entry_point(main, "predict")
