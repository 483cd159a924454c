"""Any LightningModule: the shipped unsupervised autoencoder, the manual-optimization GAN, and
modules defined only here (other metric names, their own `configure_optimizers` with a scheduler,
manual optimization) go through train, eval, resume, sweeps, Optuna, CV, the runs table, the NaN
guard and the summaries, with nothing of the template's to subclass.

The in-process runs call `train(cfg)` as `python src/train.py` would; the command-line ones
(sweeps, Optuna, kill -9) are `slow`.
"""

import csv
import logging
import math
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from expkit.data.in_memory import InMemoryDataModule
from expkit.errors import NonFiniteLossError
from expkit.runs_table.cli import main as runs_table
from helpers import FAST, PLOT, ROOT, compose_config, fault, results, run_cli
from src.eval import evaluate
from src.train import train

#: the examples this project holds (a generated project has those it kept): monitor, test metric,
#: what training logs
EXAMPLES: dict[str, tuple[str, str, list[str]]] = {
    name: metrics
    for name, metrics in {
        "autoencoder": ("val_loss", "test_loss", ["train_loss", "val_loss"]),
        "gan": ("val/gap", "test/gap", ["train/g_loss", "train/d_loss", "val/gap"]),
    }.items()
    if (ROOT / "configs" / "model" / f"{name}.yaml").is_file()
}


# ---- modules of the tests' own ------------------------------------------------------------------
class SlashLastModule(pl.LightningModule):
    """Metric names with the stage last (`loss/val`), logged on step and epoch, and its own
    `configure_optimizers` returning a dict with a scheduler."""

    def __init__(self, input_shape: list[int], num_classes: int, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(math.prod(input_shape), num_classes)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x.flatten(1)), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("loss/train", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("loss/val", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("loss/test", self._loss(batch))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}


class SilentModule(SlashLastModule):
    """Logs nothing at all: the history has zero metric columns."""

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self._loss(batch)

    def test_step(self, batch, batch_idx):
        self._loss(batch)


class ManualModule(SlashLastModule):
    """Manual optimization with the names of `SlashLastModule`: steps its optimizer and scheduler."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self._loss(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.log("loss/train", loss, on_step=True, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()


def own_module(target: str, monitor: str | None = "loss/val") -> list[str]:
    """Overrides for a module defined in this file, configured on the command line alone."""
    args = [
        "~model",
        f"+model._target_=test_any_module.{target}",
        "+model.input_shape=${data.input_shape}",
        "+model.num_classes=${data.num_classes}",
    ]
    if monitor is None:
        return [*args, "monitor.metric=null", "optimized_metric=null"]
    return [*args, f"monitor.metric={monitor}", "monitor.mode=min", f"optimized_metric={monitor}"]


def train_logging_summary(cfg) -> tuple[dict, str]:
    """`train(cfg)` and the end-of-run summary it logs (in-process runs have no train.log)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("expkit.run.summary")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        metrics = train(cfg)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return metrics, "\n".join(records)


# ---- the shipped examples, trained once each ------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example_run(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "run"
    cache = tmp_path_factory.mktemp("cache")
    metrics, summary = train_logging_summary(
        compose_config("train", out, [*FAST, PLOT, f"model={name}"], cache)
    )
    return name, metrics, out, summary


def test_an_example_trains_tests_and_writes_its_history(example_run):
    name, metrics, out, summary = example_run
    val, test, columns = EXAMPLES[name]
    done = results(out)
    assert done["status"] == "completed" and math.isfinite(metrics[test])
    assert metrics[val] == done["metrics"][val]  # the module's own names, kept as they are
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 2 and all(c in rows[0] for c in columns)
    assert not any(k.endswith(("_step", "_epoch")) or k.startswith("lr-") for k in rows[0])
    assert (out / "curves.png").stat().st_size > 1000
    assert f"[by {val}, min]" in summary and "_epoch" not in summary and test in summary


def test_eval_reproduces_the_examples_test_metric_exactly(example_run, make_cfg):
    name, metrics, out, _ = example_run
    _, test, _ = EXAMPLES[name]
    cfg = make_cfg("eval", [f"ckpt_path={results(out)['best_model_path']}"])
    assert evaluate(cfg)[test] == metrics[test]


def test_hparams_are_what_the_run_used(example_run):
    """The module builds its own optimizer: the optimizer group is not logged as if it had been."""
    _, _, out, _ = example_run
    (hparams,) = (out / "csv").rglob("hparams.yaml")
    logged = yaml.safe_load(hparams.read_text())
    assert "optimizer" not in logged and "scheduler" not in logged
    assert logged["model"]["lr"] > 0


# ---- checks before the first training step ----------------------------------------------------
# ---- a module of its own: other names, its own scheduler, nothing logged -------------------------
def test_a_module_with_its_own_names_and_scheduler_trains(tmp_path, cache_dir):
    out = tmp_path / "own"
    metrics, log = train_logging_summary(
        compose_config("train", out, [*FAST, PLOT, *own_module("SlashLastModule")], cache_dir)
    )
    assert {"loss/train", "loss/val", "loss/test"} <= set(metrics)
    assert not any(k.endswith(("_step", "_epoch")) for k in metrics)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert float(rows[1]["lr"]) == pytest.approx(float(rows[0]["lr"]) / 2)  # its StepLR ran
    assert "loss/train" in rows[0] and not any(k.endswith(("_step", "_epoch")) for k in rows[0])
    assert (out / "curves.png").is_file()
    assert "loss/train_step" not in log and "[by loss/val, min]" in log


def test_a_manual_optimization_module_of_its_own_trains_and_its_nan_is_caught(tmp_path, cache_dir):
    out = tmp_path / "manual"
    metrics = train(compose_config("train", out, [*FAST, *own_module("ManualModule")], cache_dir))
    assert {"loss/train", "loss/val", "loss/test"} <= set(metrics)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert float(rows[1]["lr"]) == pytest.approx(float(rows[0]["lr"]) / 2)
    bad = [*FAST, *own_module("ManualModule"), *fault("InfWeightAt", epoch=0, batch=3)]
    with pytest.raises(NonFiniteLossError, match="model.lr") as err:
        train(compose_config("train", tmp_path / "bad", bad, cache_dir))
    assert "optimizer.lr" not in str(err.value)


def test_a_module_that_logs_nothing_still_completes(tmp_path, cache_dir):
    out = tmp_path / "silent"
    train(
        compose_config(
            "train",
            out,
            [
                *FAST,
                PLOT,
                *own_module("SilentModule", None),
                "callbacks.early_stopping=null",
                "callbacks.model_checkpoint=null",
            ],
            cache_dir,
        )
    )
    assert results(out)["status"] == "completed"
    assert (out / "history.csv").is_file() and (out / "curves.png").is_file()


# ---- decoded-data cache keys ----------------------------------------------------------------------
class Blobs(InMemoryDataModule):
    """A datamodule of the tests' own: its arguments decide what the data are."""

    name = "blobs"
    max_value = 1.0

    def __init__(self, n_samples: int = 100, noise: float = 0.1, **kwargs) -> None:
        super().__init__(num_classes=2, input_shape=[1, 2, 2], **kwargs)

    def load_splits(self):
        gen = torch.Generator().manual_seed(0)
        n = self.hparams.n_samples
        y = torch.arange(n) % 2
        x = y.float().view(n, 1, 1, 1) + self.hparams.noise * torch.randn(n, 1, 2, 2, generator=gen)
        return {"train": (x[: n // 2], y[: n // 2]), "test": (x[n // 2 :], y[n // 2 :])}


def test_changing_a_datamodules_own_argument_changes_the_data(tmp_path):
    def data(**kwargs):
        dm = Blobs(cache_dir=str(tmp_path), val_size=0.2, **kwargs)
        dm.setup("fit")
        return dm.splits["train"][0]

    first = data(n_samples=100, noise=0.1)
    assert torch.equal(data(n_samples=100, noise=0.1), first)  # read back from the cache
    assert len(list(tmp_path.glob("blobs-*.pt"))) == 1
    assert len(data(n_samples=200, noise=0.1)) != len(first)
    assert not torch.equal(data(n_samples=100, noise=0.3), first)
    assert len(list(tmp_path.glob("blobs-*.pt"))) == 3
    assert torch.equal(data(n_samples=100, noise=0.1, batch_size=7), first)  # batching: same cache
    assert len(list(tmp_path.glob("blobs-*.pt"))) == 3


# ---- the command line: sweeps, Optuna, kill -9, runs table (slow) ----------------------------------
SWEEP_FAST = [
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.model_summary=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.history.plot=false",
]


def cli(args: list[str], tmp_path: Path, ok: bool = True):
    proc = run_cli(["src/train.py", *args, f"paths.log_dir={tmp_path}"], cwd=ROOT, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def sweep_jobs(log_dir: Path) -> list[Path]:
    (sweep,) = (log_dir / "train" / "multiruns").iterdir()
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_grid_sweep_over_the_modules_own_lr_then_the_runs_table(tmp_path, name):
    cli(["-m", f"model={name}", "model.lr=0.0003,0.003", *SWEEP_FAST], tmp_path)
    jobs = sweep_jobs(tmp_path)
    _, test, _ = EXAMPLES[name]
    done = [results(j) for j in jobs]
    assert [d["status"] for d in done] == ["completed"] * 2
    assert done[0]["metrics"][test] != done[1]["metrics"][test]  # the value took effect
    sweep = jobs[0].parent
    summary = (sweep / "summary.csv").read_text()
    assert test in summary.splitlines()[0]
    out = tmp_path / "table.csv"
    assert runs_table([str(tmp_path), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and all(row[test] for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["SlashLastModule", "ManualModule"])
def test_a_module_of_its_own_through_a_sweep(tmp_path, target):
    cli(["-m", *own_module(target), "+model.lr=0.01,0.1", *SWEEP_FAST], tmp_path)
    jobs = sweep_jobs(tmp_path)
    assert all(results(j)["status"] == "completed" for j in jobs) and len(jobs) == 2
    assert "loss/test" in (jobs[0].parent / "summary.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, cache_dir, name):
    common = [*SWEEP_FAST, f"model={name}", "trainer.max_epochs=3", f"paths.cache_dir={cache_dir}"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    cli([*common, f"hydra.run.dir={ref}"], tmp_path)
    proc = cli(
        [*common, *fault("SignalAt", name="KILL", epoch=2), f"hydra.run.dir={run}"],
        tmp_path,
        ok=False,
    )
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "results.json").exists()
    # a stored path is never taken from the run directory: typed again (docs/faults.md, trust)
    cli([f"resume={run}", "~callbacks.fault", f"paths.cache_dir={cache_dir}"], tmp_path)
    assert results(run)["metrics"] == results(ref)["metrics"]
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    expected = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_the_model_configs_say_what_they_monitor():
    for name, (val, _, _) in EXAMPLES.items():
        config = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
        assert config["monitor"]["metric"] == val and config["optimized_metric"] == val
        assert "optimizer" not in config["model"]  # they build their own
