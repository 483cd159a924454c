"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own dataset classes.

torchvision reads the real on-disk formats (IDX files, CIFAR pickles) and downloads them when the
network allows; here they are decoded once into uint8 tensors and kept in memory.
"""

import socket
from pathlib import Path

import torch
from torchvision import datasets

from expkit.data.augment import random_hflip, random_shift
from expkit.data.in_memory import InMemoryDataModule, Split
from expkit.errors import ConfigError, DatasetNotFoundError
from expkit.utils.logging_utils import get_logger
from expkit.utils.shown_path import shown_path

log = get_logger(__name__)


class TorchvisionDataModule(InMemoryDataModule):
    """Shared loading for torchvision classification datasets that fit in memory.

    The files are read from `data_dir`, or, when it lacks them, from the first of `search_dirs` that
    has them (read-only shared copies, such as a cluster's dataset mount: nothing is downloaded
    there); failing both, they are downloaded into `data_dir`.
    """

    dataset_cls: type = datasets.MNIST
    folder: str = "MNIST/raw"  # where the files live under data_dir
    files: tuple[str, ...] = ()

    def __init__(self, *args, search_dirs: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.search_dirs = [Path(d) for d in search_dirs or [] if d]

    def _root(self) -> Path:
        if self.data_dir is None:
            raise ConfigError(f"data.data_dir is required for {self.name} (set paths.data_dir).")
        if not self._has_files(self.data_dir):
            shared = next((d for d in self.search_dirs if self._has_files(d)), None)
            if shared is not None:
                return shared
        return self.data_dir

    def _has_files(self, root: Path) -> bool:
        return bool(self._files_in(root))

    def _files_in(self, root: Path) -> list[Path]:
        folder = root / self.folder
        return [p for p in folder.glob("*") if p.is_file()] if folder.is_dir() else []

    def _open(self, train: bool):
        root = self._root()
        try:
            return self.dataset_cls(str(root), train=train, download=False)
        except RuntimeError as missing:
            if not self.hparams.download:
                raise self._not_found(missing) from None
        log.info("%s not found under %s: downloading", self.name, root / self.folder)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)  # a firewall that drops packets must not hang the run forever
        try:
            return self.dataset_cls(str(root), train=train, download=True)
        except Exception as failed:  # no network, blocked mirror, disk full...
            raise self._not_found(failed) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _not_found(self, err: Exception) -> DatasetNotFoundError:
        where = shown_path(self._root() / self.folder)
        also = ", ".join(shown_path(d / self.folder) for d in self.search_dirs)
        return DatasetNotFoundError(
            f"{self.name} files are missing under {where}{f' (also looked in {also})' if also else ''} "
            f"and could not be downloaded ({type(err).__name__}: {' '.join(str(err).split())}). "
            f"Put {', '.join(self.files)} there, or point paths.data_dir at a folder that holds "
            f"{self.folder}/ (e.g. paths.data_dir=/datasets)."
        )

    def prepare_data(self) -> None:
        """Runs on one process per node: the only place that may download."""
        if self._cache_hit():
            return
        for train in (True, False):
            self._open(train)

    def _cache_hit(self) -> bool:
        path = self._cache_path()
        return path is not None and path.is_file()

    def source_files(self) -> list[Path]:
        return self._files_in(self._root())

    def load_splits(self) -> dict[str, Split]:
        log.info(
            "%s: decoding %s (once: later runs read %s)",
            self.name,
            self._root() / self.folder,
            self.cache_dir,
        )
        out = {}
        for split, train in (("train", True), ("test", False)):
            ds = self._open(train)
            x = torch.as_tensor(ds.data)
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # → N×C×H×W
            out[split] = (x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))
        return out


class MNISTDataModule(TorchvisionDataModule):
    name, dataset_cls, folder = "mnist", datasets.MNIST, "MNIST/raw"
    files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    mean, std = (0.1307,), (0.3081,)


class FashionMNISTDataModule(TorchvisionDataModule):
    name, dataset_cls, folder = "fashion_mnist", datasets.FashionMNIST, "FashionMNIST/raw"
    files = MNISTDataModule.files
    mean, std = (0.2860,), (0.3530,)
    classes = tuple(datasets.FashionMNIST.classes)


class CIFAR10DataModule(TorchvisionDataModule):
    name, dataset_cls, folder = "cifar10", datasets.CIFAR10, "cifar-10-batches-py"
    files = ("data_batch_1..5", "test_batch", "batches.meta")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    classes = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def augment_batch(self, x):
        return random_hflip(random_shift(x, pad=4))
