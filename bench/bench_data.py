"""Benchmark: `data=image_folder` against torchvision's ImageFolder + DataLoader(num_workers=2).

    python bench/bench_data.py --data-dir ../shared/datasets            # 20,000 MNIST PNGs, CPU

Writes 20,000 MNIST training images as PNG files (`<out>/mnist_png/<label>/<i>.png`, once), then:
1. times our first run's cache build (decode every PNG once into the memory-mapped uint8 cache);
2. in one process, fits the same MLP classifier (784-64-128-64-10, Adam, batch 128) on the same
   number of training images, one fit with our datamodule (second run: the cache exists) and one
   with torchvision's `ImageFolder` (Grayscale, ToTensor, Normalize per sample) through a
   `DataLoader(num_workers=2, persistent_workers=True)`, alternating, `--repeats` times;
3. prints the median training-epoch time of each, their ratio (median of per-repeat ratios) and
   its quartiles. The VM's speed drifts by ~30% within a minute, hence the back-to-back pairs.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from expkit.data.image_folder import ImageFolderDataModule  # noqa: E402
from src.models.classifier import Classifier  # noqa: E402
from src.models.nets.mlp import MLP  # noqa: E402

BATCH, LR, HIDDEN, VAL, TEST = 128, 0.002, (64, 128, 64), 1000, 1000
MEAN, STD = 0.1307, 0.3081


def write_pngs(data_dir: str, out: Path, count: int) -> Path:
    """The first `count` MNIST training images as PNG files, one folder per label (kept for reruns)."""
    from PIL import Image
    from torchvision.datasets import MNIST

    root = out / f"mnist_png_{count}"
    if sum(1 for _ in root.rglob("*.png")) == count:
        return root
    mnist = MNIST(data_dir, train=True, download=False)
    for i in range(count):
        label = int(mnist.targets[i])
        path = root / str(label) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(mnist.data[i].numpy()).save(tmp, format="PNG")
        os.replace(tmp, path)
    return root


class EpochTimer(pl.Callback):
    """Wall time of each training epoch, from its start hook to its end hook (loader start-up,
    worker start-up and every batch included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._start)


def fit(epochs: int, seed: int, **data) -> list[float]:
    """Fit a fresh MLP for `epochs`; `data` is `datamodule=` or `train_dataloaders=`."""
    torch.manual_seed(seed)
    model = Classifier(
        net=MLP([1, 28, 28], 10, HIDDEN),
        optimizer=lambda params: torch.optim.Adam(params, lr=LR),
        num_classes=10,
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
        limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, **data)
    return timer.times


def ours(root: Path, cache: Path) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(
        root=str(root), num_classes=10, input_shape=[1, 28, 28], batch_size=BATCH,
        val_size=VAL, test_size=TEST, cache_dir=str(cache), seed=0,
    )  # fmt: skip
    dm.prepare_data()
    return dm


def torchvision_loader(root: Path, n_train: int) -> torch.utils.data.DataLoader:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [transforms.Grayscale(1), transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))]
    )
    full = datasets.ImageFolder(str(root), transform=tf)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:n_train]
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(full, order.tolist()), batch_size=BATCH, shuffle=True,
        num_workers=2, persistent_workers=True,
    )  # fmt: skip


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.1f}-{q[2]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="where the PNGs go (default: a temp folder)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the training process (1: on a shared 2-core VM, two threads wait on "
        "each other: a 128-image index_select took 32 ms instead of 0.03 ms under load)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_data_"))
    started = time.perf_counter()
    root = write_pngs(args.data_dir, out, args.images)
    print(f"{args.images} PNGs in {root} ({time.perf_counter() - started:.1f} s to write or find)")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()}")

    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        ours(root, Path(cache))
        build = time.perf_counter() - started
        print(
            f"[ours] first run: cache built in {build:.1f} s ({args.images / build:.0f} images/s)"
        )
        started = time.perf_counter()
        dm = ours(root, Path(cache))
        dm.setup("fit")
        print(f"[ours] second run: cache found and opened in {time.perf_counter() - started:.2f} s")
        n_train = len(dm.splits["train"][1])
        ours_times, theirs_times, ratios = [], [], []
        for repeat in range(args.repeats):
            mine = fit(args.epochs, repeat, datamodule=dm)
            theirs = fit(args.epochs, repeat, train_dataloaders=torchvision_loader(root, n_train))
            ours_times += mine
            theirs_times += theirs
            ratios.append(statistics.median(theirs) / statistics.median(mine))
            mine_s, theirs_s = ([round(t, 2) for t in ts] for ts in (mine, theirs))
            print(f"  repeat {repeat}: ours {mine_s} s | torchvision {theirs_s} s", flush=True)
    o, t = statistics.median(ours_times), statistics.median(theirs_times)
    print(
        f"[cpu] {n_train} training images per epoch, median epoch: ours {o:.3f} s | torchvision "
        f"ImageFolder + DataLoader(num_workers=2) {t:.3f} s | ours is {statistics.median(ratios):.1f}x "
        f"faster (per-repeat ratios {quartiles(ratios) if len(ratios) > 2 else ratios}); target >= 5x"
    )


if __name__ == "__main__":
    main()
