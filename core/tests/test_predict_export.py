"""predict.py and export.py with modules and datamodules the template has never seen.

The modules and the tutorial-style datamodule live in `core/tests/predict_modules.py` (none subclasses
anything of ours); their configs are registered here in Hydra's ConfigStore (as a user's own
config file would be found), trained with `train.py` in-process, then predicted and exported
through the task functions `python src/predict.py` / `python src/export.py` call. A checkpoint of
an own module names targets no file under configs/ does, so predict and export trust them by name
(`trusted_targets`), as a user would. The shipped classifier's predict and export stay covered in
`test_results.py`.
"""

import csv
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from PIL import Image

from expkit.errors import ConfigError, DiskFullError
from expkit.testing import write_mnist
from helpers import FAST, ROOT, compose_config, results, run_cli
from src.export import export
from src.predict import predict
from src.train import train

MODULES = "predict_modules"
TRUST = (
    f"trusted_targets=[{MODULES}.TinyAutoEncoder,{MODULES}.DictPredictor,"
    f"{MODULES}.Untraceable,{MODULES}.PlainMNISTDataModule]"
)
#: what an own module that logs `val_loss` (no `/`) and no accuracy needs from train.yaml today
OWN_MODULE = ["monitor.metric=val_loss", "monitor.mode=min", "optimized_metric=null"]
ONE_EPOCH = [*FAST, "trainer.max_epochs=1", "~callbacks.history"]


def _register() -> None:
    store = ConfigStore.instance()
    for name, cls in (("tiny_ae", "TinyAutoEncoder"), ("dict_predictor", "DictPredictor")):
        store.store(
            group="model",
            name=name,
            node={"_target_": f"{MODULES}.{cls}", "input_shape": "${data.input_shape}"},
        )
    store.store(
        group="model",
        name="untraceable",
        node={"_target_": f"{MODULES}.Untraceable", "input_shape": [1, 8, 8]},
    )
    store.store(
        group="data",
        name="plain_mnist",
        node={
            "_target_": f"{MODULES}.PlainMNISTDataModule",
            "data_dir": "???",
            "batch_size": 32,
        },
    )


#: what a user types again with `ckpt_path=` of these runs: a checkpoint never sets a place, so the
#: tutorial datamodule's `data_dir` comes from this clone's `paths.data_dir` (the trust rule)
TYPED_AGAIN: dict[str, list[str]] = {}


def _train(tmp_path_factory, cache_dir, overrides: list[str]) -> str:
    _register()
    out = tmp_path_factory.mktemp("train") / "run"
    train(compose_config("train", out, [*ONE_EPOCH, *overrides], cache_dir))
    return json.loads((out / "results.json").read_text())["best_model_path"]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"), n_train=120, n_test=40)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory, cache_dir) -> str:
    """The tutorial's autoencoder (val_loss, no labels used) on the default data (digits)."""
    return _train(tmp_path_factory, cache_dir, ["model=tiny_ae", *OWN_MODULE])


@pytest.fixture(scope="module")
def dict_module(tmp_path_factory, cache_dir, mnist_dir) -> str:
    """A dict-returning module on the tutorial's plain MNIST datamodule (28×28: a 784-wide recon)."""
    data = ["data=plain_mnist", f"data.data_dir={mnist_dir}"]
    model = ["model=dict_predictor", "model.input_shape=[1,28,28]"]
    ckpt = _train(tmp_path_factory, cache_dir, [*data, *model, *OWN_MODULE])
    TYPED_AGAIN[ckpt] = [f"paths.data_dir={mnist_dir}"]
    return ckpt


@pytest.fixture(scope="module")
def plain_classifier(tmp_path_factory, cache_dir, mnist_dir) -> str:
    """The shipped MLP classifier on the tutorial's plain MNIST datamodule (no `splits`)."""
    model = ["model.num_classes=10", "model.net.num_classes=10", "model.net.input_shape=[1,28,28]"]
    ckpt = _train(
        tmp_path_factory,
        cache_dir,
        ["data=plain_mnist", f"data.data_dir={mnist_dir}", *model],
    )
    TYPED_AGAIN[ckpt] = [f"paths.data_dir={mnist_dir}"]
    return ckpt


def _run(task: str, make_cfg, ckpt: str, *extra: str):
    overrides = [f"ckpt_path={ckpt}", "extras.print_config=false", TRUST]
    overrides += [*TYPED_AGAIN.get(ckpt, []), *extra]
    cfg = make_cfg(task, overrides)
    metrics = (predict if task == "predict" else export)(cfg, overrides=overrides)
    return metrics, cfg, Path(cfg.paths.output_dir)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---- predict: whatever predict_step returns -----------------------------------------------------
def test_an_autoencoder_code_is_written_as_returned_never_as_classes(autoencoder, make_cfg):
    from hydra.utils import instantiate

    metrics, cfg, out = _run("predict", make_cfg, autoencoder)
    rows = _rows(out / "predictions.csv")
    assert list(rows[0]) == ["id", "label", "output_0", "output_1", "output_2"]
    assert metrics == {"predict/count": len(rows)} and len(rows) == 359  # no acc, no mse
    assert results(out)["predicted_as"] == "outputs"
    # the values are the module's own forward on the normalized test split, not a softmax
    stored = torch.load(autoencoder, weights_only=True)
    datamodule = instantiate(stored["run_config"]["data"], _convert_="all")
    datamodule.setup("test")
    model = instantiate(stored["run_config"]["model"], _convert_="all")
    model.load_state_dict(stored["state_dict"])
    x, y = datamodule.splits["test"]
    with torch.inference_mode():
        expected = model.eval()(datamodule.normalize(x))
    written = torch.tensor([[float(r[f"output_{j}"]) for j in range(3)] for r in rows])
    assert torch.allclose(written, expected, atol=1e-4) and (written < 0).any()
    assert [int(r["label"]) for r in rows] == y.tolist()


def test_an_autoencoder_predicts_a_tensor_file_of_raw_images(autoencoder, make_cfg):
    examples = ROOT / "docs" / "examples"
    metrics, _, out = _run("predict", make_cfg, autoencoder, f"input={examples}/digits_test10.pt")
    rows = _rows(out / "predictions.csv")
    assert metrics["predict/count"] == 10 and list(rows[0]) == [
        "id",
        *(f"output_{j}" for j in range(3)),
    ]


def test_a_dict_returning_predict_step_gets_columns_and_a_tensor_file(dict_module, make_cfg):
    metrics, cfg, out = _run("predict", make_cfg, dict_module)
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 40 == metrics["predict/count"]  # the datamodule's own predict_dataloader
    assert list(rows[0]) == ["id", "label", "code_0", "code_1", "error"]
    saved = torch.load(out / "predictions.pt", weights_only=True)
    assert saved["ids"] == [r["id"] for r in rows]
    shapes = {k: tuple(v.shape) for k, v in saved["outputs"].items()}
    assert shapes == {"code": (40, 2), "recon": (40, 784), "error": (40,)}
    assert float(rows[3]["error"]) == pytest.approx(float(saved["outputs"]["error"][3]), rel=1e-5)
    record = results(out)
    assert record["tensors"] == str(out / "predictions.pt") and record["split"] == "predict"
    assert record["outputs"] == {"code": [2], "recon": [784], "error": []}


def test_a_plain_datamodule_predicts_image_files_through_its_own_transform(
    dict_module, make_cfg, tmp_path
):
    for i in range(3):
        Image.fromarray(np.full((20, 30), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    metrics, _, out = _run(
        "predict", make_cfg, dict_module, f"input={tmp_path}", "max_columns=1000"
    )
    rows = _rows(out / "predictions.csv")
    assert [r["id"] for r in rows] == ["0.png", "1.png", "2.png"] and metrics["predict/count"] == 3
    assert "recon_783" in rows[0] and not (out / "predictions.pt").exists()  # all fit in columns


# ---- predict: the tutorial's datamodule under the shipped classifier ----------------------------
@pytest.mark.parametrize(
    ("input_", "split", "count"), [("predict", "predict", 40), ("val", "val", 20)]
)
def test_a_plain_datamodule_without_splits_predicts_classes(
    plain_classifier, make_cfg, input_, split, count
):
    metrics, _, out = _run("predict", make_cfg, plain_classifier, f"input={input_}")
    rows = _rows(out / "predictions.csv")
    assert len(rows) == count and rows[0]["id"] == f"{split}/0"
    assert {"predicted", "class", "probability", "label", "prob_9"} <= set(rows[0])
    hits = sum(r["predicted"] == r["label"] for r in rows)
    assert metrics["predict/acc"] == pytest.approx(hits / count)
    assert results(out)["predicted_as"] == "classifier"


def test_predict_accuracy_equals_the_runs_test_accuracy(plain_classifier, make_cfg):
    run = Path(plain_classifier).parents[1]
    metrics, _, _ = _run("predict", make_cfg, plain_classifier, "input=test")
    assert metrics["predict/acc"] == pytest.approx(results(run)["metrics"]["test/acc"], abs=1e-6)


# ---- export -------------------------------------------------------------------------------------
def test_an_autoencoder_exports_its_forward_with_its_own_names(autoencoder, make_cfg):
    import onnxruntime

    metrics, _, out = _run("export", make_cfg, autoencoder)
    assert metrics["export/torchscript_max_abs_diff"] < 1e-4
    assert metrics["export/onnx_max_abs_diff"] < 1e-4
    assert not (out / "net.pt").exists()  # no `net`: nothing to take out
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["code"]  # its output_names
    (code,) = session.run(None, {"input": np.zeros((5, 1, 8, 8), np.float32)})
    assert code.shape == (5, 3)
    assert [Path(f).name for f in results(out)["files"]] == ["model.ts", "model.onnx"]


def test_a_dict_forward_is_exported_under_its_keys_from_a_plain_datamodule_batch(
    dict_module, make_cfg
):
    import onnxruntime

    _, _, out = _run("export", make_cfg, dict_module, "export.formats=[onnx]")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["code", "recon"]  # forward's dict keys
    assert [i.name for i in session.get_inputs()] == ["input"]


def test_a_plain_datamodule_exports_the_shipped_classifier(plain_classifier, make_cfg, caplog):
    import onnxruntime

    with caplog.at_level(logging.INFO, logger="expkit.models.exporters"):
        metrics, _, out = _run("export", make_cfg, plain_classifier)
    for name in ("net.pt", "net.yaml", "model.ts", "model.onnx"):
        assert (out / name).stat().st_size > 0, name
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits"]  # the Classifier declares it
    assert metrics["export/onnx_max_abs_diff"] < 1e-4
    checks = [r.getMessage() for r in caplog.records if "max abs difference" in r.getMessage()]
    assert len(checks) == 2 and all("a batch of 8 (8 real predict samples)" in c for c in checks)


def test_a_format_the_forward_cannot_take_is_one_line_and_the_others_are_kept(
    tmp_path_factory, cache_dir, make_cfg, caplog
):
    ckpt = _train(tmp_path_factory, cache_dir, ["model=untraceable", *OWN_MODULE])
    metrics, _, out = _run("export", make_cfg, ckpt)
    assert not (out / "model.ts").exists() and (out / "model.onnx").is_file()
    assert set(metrics) == {"export/onnx_max_abs_diff"}
    failed = results(out)["failed_formats"]
    assert list(failed) == ["torchscript"] and "\n" not in failed["torchscript"]
    lines = [
        r.getMessage() for r in caplog.records if "export of Untraceable failed" in r.getMessage()
    ]
    assert len(lines) == 1 and "\n" not in lines[0] and "traced functions" in lines[0]
    assert results(out)["status"] == "completed"


# ---- bad inputs: one line each ------------------------------------------------------------------
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares `width`×`height` pixels (no pixel data: a decompression bomb's
    first bytes are all Pillow needs to see)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: torch.save(torch.empty(0, 1, 8, 8), d / "x.pt"),
            r"holds no samples \(shape \[0, 1, 8, 8\]\)",
        ),
        (
            lambda d: (d / "x.pt").write_bytes(b""),
            r"not a readable tensor file: an empty file \(0 bytes\)",
        ),
        (
            lambda d: (d / "x.pt").write_bytes(b"\x80\x02not a pickle"),
            r"not a readable tensor file",
        ),
        (
            lambda d: torch.save(_RunsCode(d / "code-ran"), d / "x.pt"),
            r"Refusing to load .*os\.makedirs.*could run code",
        ),
        (
            lambda d: torch.save({"images": torch.zeros(1, 1, 8, 8)}, d / "x.pt"),
            r"holds a dict, not a tensor",
        ),
        (
            lambda d: _png_header_only(d / "x.png", 40000, 40000),
            r"x\.png is refused: .*exceeds limit.*decompression-bomb",
        ),
        (
            lambda d: _png_header_only(d / "x.png", 10000, 10000),
            r"x\.png is refused: .*exceeds limit.*decompression-bomb",
        ),
        (
            lambda d: (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated"),
            r"cannot read image .*x\.png",
        ),
    ],
    ids=[
        "empty-tensor",
        "zero-bytes",
        "garbage",
        "runs-code",
        "dict",
        "bomb-40000",
        "bomb-10000",
        "broken-png",
    ],
)
def test_bad_input_files_are_one_line(autoencoder, make_cfg, tmp_path, make, message):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    (file,) = folder.iterdir()
    for input_ in (file, folder) if file.suffix == ".png" else (file,):
        with pytest.raises(ConfigError, match=message) as info:
            _run("predict", make_cfg, autoencoder, f"input={input_}")
        text = str(info.value)
        assert "\n" not in text and "weights_only" not in text, text
    assert not (folder / "code-ran").exists()


@pytest.mark.slow  # a fresh Python (~8 s of imports)
def test_a_decompression_bomb_on_the_command_line_is_one_line(autoencoder, tmp_path):
    bomb = _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    run = tmp_path / "predict"
    proc = run_cli(
        [
            "src/predict.py",
            f"ckpt_path={autoencoder}",
            f"input={bomb}",
            TRUST,
            f"hydra.run.dir={run}",
        ]
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "bomb.png is refused" in line]
    assert len(errors) == 1 and "decompression-bomb" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "not a key" not in proc.stderr
    assert results(run)["status"] == "failed"


# ---- export on a full disk ----------------------------------------------------------------------
def _fill(disk: Path, leave: int) -> None:
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory, cache_dir) -> tuple[str, dict[str, int]]:
    """The digits MLP classifier's checkpoint, and what its export writes on a roomy disk."""
    ckpt = _train(tmp_path_factory, cache_dir, [])
    out = tmp_path_factory.mktemp("roomy") / "export"
    export(compose_config("export", out, [f"ckpt_path={ckpt}", "extras.print_config=false"]))
    return ckpt, {p.name: p.stat().st_size for p in out.iterdir()}


@pytest.mark.parametrize("full_at", ["net.pt", "model.ts", "model.onnx"])
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing_half_written(
    small_disk, classifier_export, full_at
):
    ckpt, sizes = classifier_export
    order = ["config.yaml", "net.pt", "net.yaml", "model.ts", "model.onnx"]
    before = order[: order.index(full_at)]
    _fill(small_disk, sum(sizes[n] + 8192 for n in before) + sizes[full_at] // 2)
    run = small_disk / "export"
    cfg = compose_config("export", run, [f"ckpt_path={ckpt}", "extras.print_config=false"])
    with pytest.raises(
        DiskFullError, match=rf"No space left on device while writing {run / full_at}"
    ):
        export(cfg)
    assert (
        not (run / full_at).exists()
        and not list(run.glob("*.tmp"))
        and not list(run.glob(".*.tmp"))
    )
    loaders = {  # what was written before the disk filled is whole
        "net.pt": lambda f: torch.load(f, weights_only=True),
        "net.yaml": lambda f: OmegaConf.load(f)["_target_"],
        "model.ts": lambda f: torch.jit.load(str(f)),
    }
    for name in before[1:]:
        assert loaders[name](run / name) is not None, name
    record = results(run)
    assert record["status"] == "failed" and record["error"]["type"] == "DiskFullError"


@pytest.mark.slow  # a fresh Python: torch.jit.save to a path aborted the process (SIGABRT)
def test_export_command_on_a_full_disk_exits_1_in_one_line(small_disk, classifier_export):
    ckpt, sizes = classifier_export
    # room for what comes before model.ts, and for Hydra's .hydra/ files and export.log
    _fill(small_disk, sum(sizes[n] + 8192 for n in ("config.yaml", "net.pt", "net.yaml")) + 65536)
    run = small_disk / "export"
    proc = run_cli(
        ["src/export.py", f"ckpt_path={ckpt}", f"hydra.run.dir={run}", "extras.print_config=false"]
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"No space left on device while writing {run / 'model.ts'}" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(run.glob(".*.tmp"))
    assert results(run)["error"]["type"] == "DiskFullError"


def test_predict_on_a_full_disk_is_one_line_naming_the_tensor_file(small_disk, dict_module):
    """predictions.csv fits, predictions.pt (40×784 floats) does not: torch.save to a file would
    raise a RuntimeError; the bytes are built in memory and written atomically instead."""
    _fill(small_disk, 48 * 1024)
    run = small_disk / "predict"
    overrides = [f"ckpt_path={dict_module}", "extras.print_config=false", TRUST]
    overrides += TYPED_AGAIN[dict_module]
    cfg = compose_config("predict", run, overrides)
    with pytest.raises(DiskFullError, match=rf"while writing {run / 'predictions.pt'}"):
        predict(cfg, overrides=overrides)
    assert len(_rows(run / "predictions.csv")) == 40 and not (run / "predictions.pt").exists()
    assert not list(run.glob(".*.tmp")) and results(run)["error"]["type"] == "DiskFullError"


@pytest.mark.parametrize(
    ("task", "override", "message"),
    [
        ("predict", "output_file=out.txt", r"output_file='out.txt': unknown table format '.txt'"),
        ("predict", "max_columns=0", r"max_columns=0 is not allowed"),
        ("export", "export.formats=[]", r"export.formats=\[\] and TinyAutoEncoder has no `net`"),
    ],
)
def test_settings_that_leave_nothing_to_write_are_one_line(
    autoencoder, make_cfg, task, override, message
):
    with pytest.raises(ConfigError, match=message):
        _run(task, make_cfg, autoencoder, override)
