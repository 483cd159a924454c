"""Benchmark: our `train.py` against a plain PyTorch loop, same data, model, batch size and optimizer.

    python bench/bench_train.py --data-dir ../shared/datasets            # MNIST, CPU
    python bench/bench_train.py --data-dir ../shared/datasets --repeats 5

Runs, one after another in this process: a plain loop over preloaded tensors (the floor) and our
task function `train(cfg)`; prints the median per-epoch training time of each, their ratio, and
test accuracy after one epoch; then times end-to-end `python src/train.py data=mnist
trainer.max_epochs=1` in fresh processes. Repeats the CPU figures on CUDA when a GPU is present.
"""

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from src.data.torchvision_datasets import MNISTDataModule  # noqa: E402
from src.models.nets.mlp import MLP  # noqa: E402
from src.train import train  # noqa: E402
from tests.helpers import compose_config  # noqa: E402

BATCH, LR, HIDDEN = 128, 0.002, (64, 128, 64)


def raw_loop(
    data_dir: str, cache_dir: str, epochs: int, device: str, seed: int
) -> tuple[list[float], float]:
    """The floor: tensors preloaded and normalized once (the datamodule's setup), batches by indexing."""
    dm = MNISTDataModule(
        num_classes=10,
        input_shape=[1, 28, 28],
        data_dir=data_dir,
        val_size=5000,
        cache_dir=str(ROOT / "data" / "cache"),
    )
    dm.setup("fit")
    x, y = (t.to(device) for t in dm.splits["train"])
    xt, yt = (t.to(device) for t in dm.splits["test"])
    torch.manual_seed(seed)
    model = MLP([1, 28, 28], 10, HIDDEN).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    times = []
    for _ in range(epochs):
        _sync(device)
        t0 = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(y), device=device).split(BATCH):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    return times, acc


def ours(
    data_dir: str, cache_dir: str, epochs: int, trainer: str, seed: int
) -> tuple[list[float], float]:
    """Our task function with the user's defaults (callbacks, TensorBoard, progress bar)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cfg = compose_config(
            "train",
            out,
            [
                "data=mnist",
                f"paths.data_dir={data_dir}",
                f"trainer={trainer}",
                f"trainer.max_epochs={epochs}",
                "trainer.precision=32-true",
                "extras.print_config=false",
                f"seed={seed}",
                f"paths.cache_dir={cache_dir}",
            ],
        )
        metrics = train(cfg)
        rows = list(csv.DictReader((out / "history.csv").open()))
        return [float(r["train_time_s"]) for r in rows], metrics["test/acc"]


def end_to_end(data_dir: str, cache_dir: str, repeats: int) -> list[float]:
    walls = []
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
    return walls


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(
    data_dir: str, cache_dir: str, repeats: int, epochs: int, device: str, trainer: str
) -> None:
    raw_times, ours_times, raw_accs, ours_accs = [], [], [], []
    for r in range(repeats):
        t, a = raw_loop(data_dir, cache_dir, epochs, device, seed=r)
        raw_times += t[1:] or t  # the first epoch pays one-off warm-up
        raw_accs.append(a)
        t, a = ours(data_dir, cache_dir, epochs, trainer, seed=r)
        ours_times += t[1:] or t
        ours_accs.append(a)
    raw, our = statistics.median(raw_times), statistics.median(ours_times)
    print(
        f"[{device}] epoch time, median of {len(raw_times)} epochs: raw loop {raw:.3f} s | "
        f"train.py {our:.3f} s | ratio {our / raw:.2f}x"
    )
    print(
        f"[{device}] test/acc after {epochs} epoch(s), median of {repeats}: raw loop "
        f"{statistics.median(raw_accs):.4f} | train.py {statistics.median(ours_accs):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per repeat (the first is not timed)"
    )
    parser.add_argument(
        "--cache-dir", default=str(ROOT / "data" / "cache"), help="decoded-tensor cache"
    )
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST MLP 784-64-128-64-10, "
        f"batch {BATCH}, Adam lr {LR}"
    )
    compare(args.data_dir, args.cache_dir, args.repeats, args.epochs, "cpu", "cpu")
    walls = end_to_end(args.data_dir, args.cache_dir, args.repeats)
    print(
        f"[cpu] end-to-end `python src/train.py data=mnist trainer.max_epochs=1`: median "
        f"{statistics.median(walls):.2f} s wall ({', '.join(f'{w:.2f}' for w in walls)})"
    )
    if torch.cuda.is_available():
        compare(args.data_dir, args.cache_dir, args.repeats, args.epochs, "cuda", "gpu")
    else:
        print("[cuda] skipped: no GPU on this machine")


if __name__ == "__main__":
    main()
