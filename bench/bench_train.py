"""Benchmark: our `train.py` against a plain PyTorch loop, same data, model, batch size and optimizer.

    python bench/bench_train.py --data-dir ../shared/datasets            # MNIST, CPU
    python bench/bench_train.py --data-dir ../shared/datasets --repeats 5

Runs, back to back in this process: a plain loop over preloaded tensors (the floor) and our task
function `train(cfg)` three ways: the user's defaults, Lightning alone (no callbacks, logger or
bar) and Lightning with its own defaults (its checkpoint, bar, summary, a TensorBoard logger);
prints the median per-epoch training time of each, its ratio to the raw loop and test accuracy,
the template against the two Lightning rows, and what Lightning's hook dispatch costs per step for
our default callbacks; then times end-to-end `python src/train.py data=mnist trainer.max_epochs=1`
in fresh processes and prints its one-epoch test accuracy. Repeats the in-process comparison on
CUDA when a GPU is present.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from expkit.run.compose import compose_config  # noqa: E402
from src.data.torchvision_datasets import MNISTDataModule  # noqa: E402
from src.models.nets.mlp import MLP  # noqa: E402
from src.train import train  # noqa: E402

BATCH, LR, HIDDEN = 128, 0.002, (64, 128, 64)


class RawLoop:
    """The floor: the same MLP and Adam in a plain PyTorch loop over the datamodule's preloaded,
    normalized tensors, batches by indexing. No Lightning, no callbacks, no logging."""

    def __init__(self, data_dir: str, cache_dir: str, device: str, seed: int) -> None:
        dm = MNISTDataModule(
            num_classes=10,
            input_shape=[1, 28, 28],
            data_dir=data_dir,
            val_size=5000,
            cache_dir=cache_dir,
        )
        dm.setup("fit")
        self.device = device
        self.x, self.y = (t.to(device) for t in dm.splits["train"])
        self.x_test, self.y_test = (t.to(device) for t in dm.splits["test"])
        # the splits hold uint8; the floor normalizes once up front (train.py does it per batch)
        self.x, self.x_test = dm.normalize(self.x), dm.normalize(self.x_test)
        torch.manual_seed(seed)
        self.model = MLP([1, 28, 28], 10, HIDDEN).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.generator = torch.Generator(device).manual_seed(seed)

    def epoch(self) -> float:
        """One training epoch; returns its wall time in seconds."""
        model, opt, x, y = self.model, self.optimizer, self.x, self.y
        _sync(self.device)
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), device=self.device, generator=self.generator)
        for idx in order.split(BATCH):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(self.device)
        return time.perf_counter() - t0

    @torch.no_grad()
    def test_accuracy(self) -> float:
        self.model.eval()
        return (self.model(self.x_test).argmax(1) == self.y_test).float().mean().item()


class InterleavedRawEpochs(pl.Callback):
    """Times each training epoch of the fit it is added to (first batch start to last batch end,
    what a plain loop times) and runs one raw-loop epoch right after it, so that each pair is
    timed seconds apart: on a shared VM the speed drifts by 30% within a minute, which swamps a
    comparison of runs made a minute apart."""

    runs: list[dict] = []  # one per fit: epoch times of both, raw test accuracy

    def __init__(self, data_dir: str, cache_dir: str, device: str, seed: int) -> None:
        self.raw = RawLoop(data_dir, cache_dir, device, seed)
        self.ours: list[float] = []
        self.raw_times: list[float] = []
        self._start = self._last_batch_end = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(self.raw.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.raw.device.startswith("cuda"):  # the last batch's kernels may still be running
            _sync(self.raw.device)
            self._last_batch_end = time.perf_counter()
        self.ours.append(self._last_batch_end - self._start)
        self.raw_times.append(self.raw.epoch())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.runs.append(
            {
                "ours": self.ours,
                "raw": self.raw_times,
                "raw_acc": self.raw.test_accuracy(),
                "steps": math.ceil(len(self.raw.y) / BATCH),
            }
        )


#: train.py with no callbacks, no logger, no progress bar: Lightning's own loop, our module and data
LIGHTNING_ALONE = ["callbacks=none", "logger=none", "+trainer.enable_progress_bar=false"]
#: what a plain `pl.Trainer()` adds by itself: its ModelCheckpoint, TQDM bar, model summary, and
#: a TensorBoard logger (ours, which only differs in how it continues on resume)
LIGHTNING_DEFAULTS = ["callbacks=none", "trainer.enable_model_summary=true"]


def paired_epochs(
    data_dir: str,
    cache_dir: str,
    epochs: int,
    trainer: str,
    device: str,
    seed: int,
    overrides: list[str] = (),
) -> tuple[list[float], list[float], float, float, int]:
    """Our task function, with the user's defaults unless `overrides` say otherwise, and a raw
    epoch after each of its epochs. Returns (ours, raw) epoch times, test accuracies and the number
    of steps in an epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        bench_callback = "+callbacks.raw_loop"
        cfg = compose_config(
            "train",
            Path(tmp) / "run",
            [
                "data=mnist",
                f"paths.data_dir={data_dir}",
                f"trainer={trainer}",
                f"trainer.max_epochs={epochs}",
                "trainer.precision=32-true",
                "extras.print_config=false",
                f"seed={seed}",
                f"paths.cache_dir={cache_dir}",
                *overrides,
                f"{bench_callback}._target_={__name__}.InterleavedRawEpochs",
                f"{bench_callback}.data_dir={data_dir}",
                f"{bench_callback}.cache_dir={cache_dir}",
                f"{bench_callback}.device={device}",
                f"{bench_callback}.seed={seed}",
            ],
        )
        metrics = train(cfg)
        run = InterleavedRawEpochs.runs.pop()
        return run["ours"], run["raw"], metrics["test/acc"], run["raw_acc"], run["steps"]


def end_to_end(data_dir: str, repeats: int) -> tuple[list[float], list[float]]:
    """Wall time of the whole command in a fresh process (imports included), and its test/acc."""
    walls, accs = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "src/train.py",
                    "data=mnist",
                    f"paths.data_dir={data_dir}",
                    "trainer.max_epochs=1",
                    f"paths.log_dir={tmp}",
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            walls.append(time.perf_counter() - t0)
            (results,) = Path(tmp).glob("train/runs/*/results.json")
            accs.append(json.loads(results.read_text())["metrics"]["test/acc"])
    return walls, accs


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(
    data_dir: str, cache_dir: str, repeats: int, epochs: int, device: str, trainer: str
) -> float:
    """Each repeat fits train.py with the user's defaults, Lightning alone and Lightning with its
    own defaults, back to back (every epoch paired with a raw epoch run right after it); prints each
    against the raw loop and the template against the other two: the per-repeat quotient of their
    median ratios. Returns the median raw-loop step time."""
    variants = {
        "train.py": [],
        "Lightning alone": LIGHTNING_ALONE,
        "Lightning defaults": LIGHTNING_DEFAULTS,
    }
    epoch_ratios: dict[str, list[float]] = {name: [] for name in variants}
    times = {name: {"ours": [], "raw": []} for name in variants}
    accs = {name: {"ours": [], "raw": []} for name in variants}
    repeat_medians: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, overrides in variants.items():
            ours, raw, ours_acc, raw_acc, steps = paired_epochs(
                data_dir, cache_dir, epochs, trainer, device, seed=r, overrides=overrides
            )
            ours, raw = (ours[1:], raw[1:]) if epochs > 1 else (ours, raw)  # epoch 0 warms up
            ratios = [o / w for o, w in zip(ours, raw, strict=True)]
            epoch_ratios[name] += ratios
            repeat_medians[name].append(statistics.median(ratios))
            times[name]["ours"] += ours
            times[name]["raw"] += raw
            accs[name]["ours"].append(ours_acc)
            accs[name]["raw"].append(raw_acc)
    for name, overrides in variants.items():
        label = name if not overrides else f"{name} ({' '.join(overrides)})"
        ratios = epoch_ratios[name]
        print(
            f"[{device}] epoch time, median of {len(ratios)} epochs: raw loop "
            f"{statistics.median(times[name]['raw']):.3f} s | {label} "
            f"{statistics.median(times[name]['ours']):.3f} s | ratio {statistics.median(ratios):.2f}x "
            f"(median of epoch pairs run back to back; quartiles {_quartiles(ratios)})"
        )
        print(
            f"[{device}] test/acc after {epochs} epoch(s), median of {repeats}: raw loop "
            f"{statistics.median(accs[name]['raw']):.4f} | {name} "
            f"{statistics.median(accs[name]['ours']):.4f}"
        )
    for reference in ("Lightning alone", "Lightning defaults"):
        quotients = [
            t / a
            for t, a in zip(repeat_medians["train.py"], repeat_medians[reference], strict=True)
        ]
        print(
            f"[{device}] train.py / {reference}, per repeat: "
            f"{', '.join(f'{q:.3f}' for q in quotients)} (median {statistics.median(quotients):.3f})"
        )
    return statistics.median([t for name in variants for t in times[name]["raw"]]) / steps


def hook_dispatch_cost(step_s: float) -> None:
    """What Lightning charges per training step for having callbacks at all: it calls ~6 hooks a
    step on every callback, each through `getattr`, `state_key` and a profiler context, whether the
    callback overrides the hook or not, unless the hook is not a callable. Timed on the default
    callbacks (with the restored-state guard and run config every run adds) vs none, each on its
    own and as a run installs them (`install_lifecycle`: ours as one `RunLifecycle`, no per-batch
    hook that does nothing)."""
    from pytorch_lightning.trainer.call import _call_callback_hooks

    from expkit.callbacks.lifecycle import install_lifecycle
    from expkit.callbacks.restored_state import RestoredStateGuard
    from expkit.checkpoints.run_config import RunConfigInCheckpoint
    from expkit.run.build import instantiate_callbacks
    from expkit.run.profiler import NoOpProfiler

    #: the hooks Lightning calls on every callback once per training step, with their arguments
    per_step = (
        ("on_train_batch_start", (None, 0)),
        ("on_before_backward", (None,)),
        ("on_after_backward", ()),
        ("on_before_optimizer_step", (None,)),
        ("on_before_zero_grad", (None,)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config("train", Path(tmp) / "run", [])

        def defaults() -> list[pl.Callback]:
            run_own = [RestoredStateGuard(tmp), RunConfigInCheckpoint({})]
            return instantiate_callbacks(cfg.callbacks) + run_own

        costs = {}
        for name, callbacks in (
            ("separate", defaults()),
            ("installed", install_lifecycle(defaults())),
            ("none", []),
        ):
            trainer = pl.Trainer(
                callbacks=callbacks,
                logger=False,
                enable_model_summary=False,
                enable_progress_bar=bool(callbacks),
                enable_checkpointing=bool(callbacks),
                profiler=NoOpProfiler(),
            )
            n = 20_000
            t0 = time.perf_counter()
            for _ in range(n):
                for hook, args in per_step:
                    _call_callback_hooks(trainer, hook, *args)
            costs[name] = (time.perf_counter() - t0) / n
    # on_train_batch_end (the sixth) is not timed: the callbacks that override it do work there
    for name, label in (("installed", "as a run installs them"), ("separate", "each on its own")):
        extra = costs[name] - costs["none"]
        print(
            f"[cpu] Lightning's hook dispatch for the {len(cfg.callbacks) + 2} default callbacks "
            f"{label}: {extra * 1e6:.0f} us per step ({100 * extra / step_s:.1f}% of a raw-loop "
            f"step of {step_s * 1e3:.2f} ms; 5 of the 6 per-step hooks)"
        )


def _quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=5, help="epochs per fit (the first is not timed)"
    )
    parser.add_argument(
        "--cache-dir", default=str(ROOT / "data" / "cache"), help="decoded-tensor cache"
    )
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST MLP 784-64-128-64-10, "
        f"batch {BATCH}, Adam lr {LR}"
    )
    raw_step = compare(args.data_dir, args.cache_dir, args.repeats, args.epochs, "cpu", "cpu")
    hook_dispatch_cost(raw_step)
    walls, accs = end_to_end(args.data_dir, args.repeats)
    print(
        f"[cpu] end-to-end `python src/train.py data=mnist trainer.max_epochs=1`: median "
        f"{statistics.median(walls):.2f} s wall ({', '.join(f'{w:.2f}' for w in walls)}); "
        f"test/acc after 1 epoch {statistics.median(accs):.4f}"
    )
    if torch.cuda.is_available():
        compare(args.data_dir, args.cache_dir, args.repeats, args.epochs, "cuda", "gpu")
    else:
        print("[cuda] skipped: no GPU on this machine")


if __name__ == "__main__":
    main()
