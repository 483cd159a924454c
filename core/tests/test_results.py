"""What a user does right after training: the summary, history + curves, loggers, predict, export.

One short digits run (every logger on: `logger=many`) is shared by the tests that read its outputs;
predict and export run in-process on its best checkpoint, through the same task functions that
`python src/predict.py` and `python src/export.py` call.
"""

import csv
import json
import logging
import os
import re
import shlex
import time
from pathlib import Path

import pytest
import torch

from expkit.errors import ConfigError, ExportError
from expkit.run.fit_summary import fit_rows
from expkit.run.plan import Monitor
from expkit.run.record import RunRecord
from expkit.run.summary import summary_text
from helpers import FAST, PLOT, ROOT, compose_config, run_cli
from src.eval import evaluate
from src.export import export
from src.predict import predict
from src.train import train

EPOCHS = 3
EXAMPLES = ROOT / "docs" / "examples"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache_dir):
    """A 3-epoch digits run with TensorBoard, CSV, MLflow and W&B; its summary text captured."""
    out = tmp_path_factory.mktemp("results") / "run"
    cfg = compose_config(
        "train", out, [*FAST, PLOT, f"trainer.max_epochs={EPOCHS}", "logger=many"], cache_dir
    )
    capture = _Capture()
    summary_log = logging.getLogger("expkit.run.summary")
    summary_log.addHandler(capture)
    level = summary_log.level
    summary_log.setLevel(logging.INFO)  # setLevel, not `.level =`: it also clears logging's cache
    try:
        metrics = train(cfg)
    finally:
        summary_log.removeHandler(capture)
        summary_log.setLevel(level)
    results = json.loads((out / "results.json").read_text())
    return {
        "cfg": cfg,
        "metrics": metrics,
        "out": out,
        "best": results["best_model_path"],
        "summary": "\n".join(capture.messages),
    }


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    cfg = compose_config("export", out, [f"ckpt_path={run['best']}", "extras.print_config=false"])
    return export(cfg), out


def _predict(make_cfg, ckpt: str, input_: str | Path, *extra: str):
    overrides = [f"ckpt_path={ckpt}", f"input={input_}", "extras.print_config=false", *extra]
    cfg = make_cfg("predict", overrides)
    metrics = predict(cfg, overrides=overrides)
    return metrics, _csv_rows(Path(cfg.output_file)), cfg


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---- summary ---------------------------------------------------------------------------------
def test_summary_names_metrics_files_and_the_eval_command(run):
    text, metrics, out = run["summary"], run["metrics"], run["out"]
    assert "Train summary: completed" in text
    assert f"final (epoch {EPOCHS - 1})" in text and "best (epoch " in text
    assert f"test/acc {metrics['test/acc']:.4f}" in text
    assert f"val/acc_best {metrics['val/acc_best']:.4f}" not in text  # a running max, not a result
    for name in ("curves.png", "history.csv", "results.json", run["best"]):
        assert str(Path(out, name).name) in text
    assert "tensorboard --logdir" in text and "mlflow ui --backend-store-uri sqlite:///" in text
    assert "wandb sync" in text
    line = next(line for line in text.splitlines() if "python src/eval.py" in line)
    command = shlex.split(line.split("evaluate it", 1)[1])
    assert command[:2] == ["python", "src/eval.py"] and len(command) == 3
    assert Path(command[2].removeprefix("ckpt_path=")).resolve() == Path(run["best"]).resolve()


def test_summary_without_checkpoint_or_test_says_so(make_cfg):
    cfg = make_cfg("train", ["callbacks=none", "test=false"])
    record = RunRecord("train", cfg.paths.output_dir, metrics={"val/acc": 0.9})
    record.summary_rows = fit_rows(Monitor("val/acc", "max"), record, trainer=None)
    text = summary_text(record)
    assert "final" in text and "val/acc 0.9000" in text
    assert "none saved" in text and "python src/" not in text and "test/" not in text


def test_the_printed_eval_command_reproduces_the_test_metrics(run, make_cfg, caplog):
    line = next(line for line in run["summary"].splitlines() if "python src/eval.py" in line)
    ckpt_arg = shlex.split(line)[-1]
    cfg = make_cfg("eval", [ckpt_arg, "extras.print_config=false"])
    with caplog.at_level(logging.INFO, logger="expkit.run.summary"):
        metrics = evaluate(cfg)
    assert metrics["test/acc"] == run["metrics"]["test/acc"]
    assert "Eval summary: completed" in caplog.text and f"{metrics['test/acc']:.4f}" in caplog.text


# ---- history, curves, loggers -----------------------------------------------------------------
def test_history_has_one_row_per_epoch_and_curves_are_drawn(run):
    out = run["out"]
    rows = _csv_rows(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for column in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s"):
        assert all(float(r[column]) >= 0 for r in rows), column
    # the same values the CSVLogger got, epoch by epoch (train metrics are logged at epoch end,
    # after callbacks' on_train_epoch_end: the table must not lag an epoch behind)
    logged = {}
    for r in _csv_rows(out / "csv" / "metrics.csv"):
        if r["train/loss"]:
            logged[int(r["epoch"])] = float(r["train/loss"])
    assert [float(r["train/loss"]) for r in rows] == [logged[e] for e in range(EPOCHS)]
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import matplotlib.image

    height, width = matplotlib.image.imread(out / "curves.png").shape[:2]
    assert width > 2 * height  # one panel per quantity (loss, acc), side by side


def test_tensorboard_holds_hparams_and_the_metric_history(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hparams_tags, scalars = set(), {}
    for events in sorted((run["out"] / "tensorboard").glob("events.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if _has_plugin(acc, "hparams"):
            hparams_tags |= set(acc.PluginTagToContent("hparams"))
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = scalars.get(tag, 0) + len(acc.Scalars(tag))
    assert "_hparams_/experiment" in hparams_tags
    assert scalars["val/acc"] == EPOCHS and scalars["train/loss"] == EPOCHS
    assert scalars["test/acc"] == 1
    assert "optimizer" in (run["out"] / "tensorboard" / "hparams.yaml").read_text()


def _has_plugin(acc, name: str) -> bool:
    try:
        acc.PluginTagToContent(name)
    except KeyError:
        return False
    return True


def test_mlflow_sqlite_store_holds_the_run(run):
    """Read back through MLflow's own client, with no opt-in variable: the default store is
    MLflow's SQLite database in the logs, which `mlflow ui` shows."""
    from mlflow.tracking import MlflowClient

    # logger.mlflow.tracking_uri: sqlite:///${paths.log_dir}/mlflow/mlflow.db
    database = run["out"].parent / "mlflow" / "mlflow.db"
    assert database.is_file() and "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("train")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.data.tags["run_dir"] == str(run["out"])
    assert mlflow_run.data.params["optimizer.lr"] == str(run["cfg"].optimizer.lr)
    assert not [k for k in mlflow_run.data.params if "/" in k]  # every key as a user types it
    assert len(client.get_metric_history(mlflow_run.info.run_id, "val/acc")) == EPOCHS
    assert mlflow_run.data.metrics["test/acc"] == pytest.approx(run["metrics"]["test/acc"])


def test_wandb_offline_run_is_written(run):
    import wandb

    wandb.finish()  # the run stays open until the process ends or the next run starts
    (offline,) = (run["out"] / "wandb").glob("offline-run-*")
    (log_file,) = offline.glob("run-*.wandb")
    deadline = time.monotonic() + 20  # wandb's service may still be flushing the file
    while log_file.stat().st_size < 1000 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log_file.stat().st_size > 1000


# ---- predict ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("input_", "count"),
    [
        ("test", 359),
        ("val", 144),
        ("train", 1294),
        (EXAMPLES / "digits", 10),
        (EXAMPLES / "digits" / "test_015_label_3.png", 1),
        (EXAMPLES / "digits_test10.pt", 10),
    ],
    ids=["test", "val", "train", "image-folder", "one-image", "tensor-file"],
)
def test_predict_writes_one_row_per_input(run, make_cfg, input_, count):
    metrics, rows, cfg = _predict(make_cfg, run["best"], input_)
    assert len(rows) == count == metrics["predict/count"]
    for row in rows:
        probs = [float(row[f"prob_{k}"]) for k in range(10)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert int(row["predicted"]) == max(range(10), key=probs.__getitem__)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["status"] == "completed" and results["predictions"] == cfg.output_file


def test_predict_on_the_test_split_agrees_with_the_run_test_accuracy(run, make_cfg):
    metrics, rows, _ = _predict(make_cfg, run["best"], "test")
    assert metrics["predict/acc"] == pytest.approx(run["metrics"]["test/acc"], abs=1e-6)
    assert sum(r["predicted"] == r["label"] for r in rows) / len(rows) == pytest.approx(
        metrics["predict/acc"]
    )


def test_predict_images_and_tensor_files_match_the_labels(run, make_cfg):
    """docs/examples: the same 10 test images (one per class), as 32x32 PNGs and as a tensor file."""
    _, image_rows, _ = _predict(make_cfg, run["best"], EXAMPLES / "digits")
    by_label = {int(re.search(r"label_(\d)", r["id"]).group(1)): r for r in image_rows}
    hits = sum(int(row["predicted"]) == label for label, row in by_label.items())
    assert hits >= 8  # real test images, a ~95 % model
    _, tensor_rows, _ = _predict(make_cfg, run["best"], EXAMPLES / "digits_test10.pt")
    for label, row in enumerate(tensor_rows):  # the tensor file holds classes 0..9 in order
        assert row["predicted"] == by_label[label]["predicted"]
        assert float(row["probability"]) == pytest.approx(
            float(by_label[label]["probability"]), abs=0.02
        )


def test_predict_bad_inputs_fail_with_a_clear_error(run, make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"input='nowhere'.*Allowed: a split"):
        _predict(make_cfg, run["best"], "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        _predict(make_cfg, run["best"], tmp_path / "empty")
    torch.save(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), tmp_path / "wrong.pt")
    with pytest.raises(ConfigError, match=r"shape \[2, 3, 8, 8\].*N×1×8×8"):
        _predict(make_cfg, run["best"], tmp_path / "wrong.pt")


# ---- export -----------------------------------------------------------------------------------
def test_export_writes_checked_torchscript_and_onnx(exported):
    metrics, out = exported
    assert metrics["export/torchscript_max_abs_diff"] < 1e-4
    assert metrics["export/onnx_max_abs_diff"] < 1e-4
    for name in ("net.pt", "net.yaml", "model.ts", "model.onnx"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*deprecated")
def test_onnx_and_torchscript_match_pytorch_on_another_batch_size(exported, run):
    """Checked here independently of export's own check, on 37 real test images."""
    import onnxruntime
    from hydra.utils import instantiate

    _, out = exported
    datamodule = instantiate(run["cfg"].data, _convert_="all")
    datamodule.setup("test")
    x = datamodule.normalize(datamodule.splits["test"][0][-37:])  # as the network sees it
    net = instantiate(run["cfg"].model.net).eval()
    net.load_state_dict(torch.load(out / "net.pt", weights_only=True))
    with torch.inference_mode():
        expected = net(x)
        scripted = torch.jit.load(str(out / "model.ts"))(x)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    onnx_out = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert (scripted - expected).abs().max() < 1e-4
    assert (onnx_out - expected).abs().max() < 1e-4


def test_export_refuses_an_export_beyond_the_tolerance(run, make_cfg):
    cfg = make_cfg(
        "export",
        [f"ckpt_path={run['best']}", "export.formats=[torchscript]", "export.atol=0"],
    )
    with pytest.raises(ExportError, match=r"torchscript export .* by 0 .*\(export.atol=0\)"):
        export(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("export.formats=[tflite]", r"export.formats=.*tflite.*allowed"),
        ("export.atol=-1", r"export.atol=-1 is not allowed"),
        ("export.batch_size=0", r"export.batch_size=0 is not allowed"),
    ],
)
def test_export_rejects_bad_settings(run, make_cfg, override, message):
    cfg = make_cfg("export", [f"ckpt_path={run['best']}", override])
    with pytest.raises(ConfigError, match=message):
        export(cfg)


# ---- command line -----------------------------------------------------------------------------
@pytest.mark.slow
def test_heavy_libraries_load_only_when_selected():
    code = (
        "import sys, src.train, src.eval, src.predict, src.export\n"
        "print(sorted(m for m in ('mlflow', 'wandb', 'onnx', 'onnxruntime', 'onnxscript') "
        "if m in sys.modules))"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_predict_and_export_from_the_command_line(run, tmp_path):
    best = run["best"]
    result = run_cli(
        [
            "src/predict.py",
            f"ckpt_path={best}",
            "input=docs/examples/digits",
            f"hydra.run.dir={tmp_path / 'predict'}",
            "extras.print_config=false",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predict summary: completed" in result.stdout + result.stderr
    assert "10 item(s)" in result.stdout + result.stderr
    assert len(_csv_rows(tmp_path / "predict" / "predictions.csv")) == 10

    result = run_cli(
        [
            "src/export.py",
            f"ckpt_path={best}",
            f"hydra.run.dir={tmp_path / 'export'}",
            "extras.print_config=false",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "export" / "export.log").read_text()
    diffs = re.findall(r"max abs difference from PyTorch on a batch of \d+ \(.*?\): (\S+)", log)
    assert len(diffs) == 2 and all(float(d) < 1e-4 for d in diffs)
