"""Datamodules: the bundled digits, and torchvision's real loaders on small files written here in the
real on-disk formats (IDX for MNIST/Fashion-MNIST, pickled batches for CIFAR-10)."""

import pickle
import struct

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.datasets import cifar

from expkit.data.batch_loader import IndexBatchLoader
from expkit.data.digits import DigitsDataModule
from expkit.errors import ConfigError, DatasetNotFoundError
from src.data.torchvision_datasets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

RNG = np.random.default_rng(0)


def write_idx(path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, dtype=0x08 ubyte, ndim), big-endian dims, then the raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder: str, n_train: int = 60, n_test: int = 20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", RNG.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def write_cifar10(root, per_batch: int = 12, n_test: int = 20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(name, n):
        data = {
            "data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": list(np.arange(n) % 10),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(data, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_batch)
    batch("test_batch", n_test)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


def setup_dm(cls, root, cache_dir=None, **kw):
    kw = {
        "num_classes": 10,
        "data_dir": str(root),
        "val_size": 10,
        "download": False,
        "cache_dir": cache_dir,
        **kw,
    }
    dm = cls(**kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_digits_splits_are_disjoint_and_complete(cache_dir):
    dm = DigitsDataModule(
        num_classes=10, input_shape=[1, 8, 8], batch_size=64, val_size=0.1, cache_dir=str(cache_dir)
    )
    dm.setup("fit")
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes == {"train": 1294, "val": 144, "test": 359}
    x, y = next(iter(dm.train_dataloader()))
    # held at the source's dtype (a quarter of float32's bytes), normalized per batch on the device
    assert x.dtype == torch.uint8 and x.shape == (64, 1, 8, 8) and y.dtype == torch.long
    x, _ = dm.on_after_batch_transfer((dm.splits["train"][0], y), 0)
    assert x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1  # standardized


@pytest.mark.parametrize(
    ("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")]
)
def test_mnist_family_reads_idx_files(tmp_path, cls, folder):
    dm = setup_dm(cls, write_mnist(tmp_path, folder), input_shape=[1, 28, 28])
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 50, "val": 10, "test": 20}
    assert dm.splits["test"][0].shape == (20, 1, 28, 28)
    assert dm.splits["test"][1].tolist() == [i % 10 for i in range(20)]


def test_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    # torchvision checks the md5 of the official files; these are real-format files with other bytes
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    dm = setup_dm(CIFAR10DataModule, write_cifar10(tmp_path), input_shape=[3, 32, 32])
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 50, "val": 10, "test": 20}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32)
    augmented = dm.augment_batch(x)
    assert augmented.shape == x.shape


def test_decoded_tensors_are_cached(tmp_path, monkeypatch):
    root, cache = write_mnist(tmp_path / "d", "MNIST"), tmp_path / "cache"
    first = setup_dm(MNISTDataModule, root, cache_dir=str(cache), input_shape=[1, 28, 28])
    assert len(list(cache.glob("mnist-*.pt"))) == 1

    def no_decoding(self, train):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(MNISTDataModule, "_open", no_decoding)
    second = setup_dm(MNISTDataModule, root, cache_dir=str(cache), input_shape=[1, 28, 28])
    assert torch.equal(first.splits["train"][0], second.splits["train"][0])


def test_missing_files_without_network_name_where_to_put_them(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    dm = MNISTDataModule(
        num_classes=10, input_shape=[1, 28, 28], data_dir=str(tmp_path), download=True
    )
    with pytest.raises(
        DatasetNotFoundError, match=r"MNIST/raw.*train-images-idx3-ubyte.*paths.data_dir"
    ):
        dm.prepare_data()


def test_a_shared_copy_is_read_when_data_dir_lacks_the_files(tmp_path, monkeypatch):
    shared = write_mnist(tmp_path / "shared", "MNIST")
    monkeypatch.setattr(datasets.MNIST, "download", lambda self: pytest.fail("downloaded"))
    dm = setup_dm(
        MNISTDataModule,
        tmp_path / "empty",
        input_shape=[1, 28, 28],
        search_dirs=[str(tmp_path / "absent"), str(shared)],
    )
    assert len(dm.splits["test"][1]) > 0
    assert not (tmp_path / "empty").exists()  # nothing was downloaded or written there


def test_wrong_input_shape_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.input_shape=\[1, 32, 32\]"):
        setup_dm(MNISTDataModule, write_mnist(tmp_path, "MNIST"), input_shape=[1, 32, 32])


def test_batch_order_depends_only_on_seed_and_epoch():
    x, y = torch.arange(100).view(100, 1), torch.arange(100)
    epoch = {"n": 0}
    loader = IndexBatchLoader(x, y, 16, shuffle=True, seed=1, context=lambda: (epoch["n"], 0, 1))
    first = torch.cat([b[1] for b in loader])
    epoch["n"] = 1
    second = torch.cat([b[1] for b in loader])
    assert sorted(first.tolist()) == list(range(100)) and not torch.equal(first, second)
    epoch["n"] = 0
    assert torch.equal(first, torch.cat([b[1] for b in loader]))


@pytest.mark.parametrize("train", [True, False])
def test_ddp_shards_cover_the_data(train):
    x, y = torch.arange(101).view(101, 1), torch.arange(101)
    shards = []
    for rank in range(2):
        loader = IndexBatchLoader(
            x, y, 8, shuffle=train, seed=0, pad_shards=train, context=lambda r=rank: (0, r, 2)
        )
        shards.append(torch.cat([b[1] for b in loader]))
    assert set(torch.cat(shards).tolist()) == set(range(101))
    if train:  # equal batch counts on every rank, or DDP hangs
        assert len(shards[0]) == len(shards[1]) == 51
    else:  # every sample evaluated exactly once
        assert len(shards[0]) + len(shards[1]) == 101


def test_classic_dataloader_when_workers_are_asked_for(cache_dir):
    dm = DigitsDataModule(
        num_classes=10, input_shape=[1, 8, 8], num_workers=1, cache_dir=str(cache_dir)
    )
    dm.setup("fit")
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
