"""The torchvision data examples (MNIST, Fashion-MNIST, CIFAR-10): their real loaders on small files
written here in the real on-disk formats (IDX, pickled batches), the decoded-tensor cache, the
shared copy and the one-line errors. A generated project without these examples has none of this
file."""

import pickle

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.datasets import cifar

from expkit.errors import ConfigError, DatasetNotFoundError
from expkit.testing import setup_datamodule, write_mnist
from src.data.torchvision_datasets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

RNG = np.random.default_rng(0)


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


@pytest.mark.parametrize(
    ("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")]
)
def test_mnist_family_reads_idx_files(tmp_path, cls, folder):
    dm = setup_datamodule(cls, write_mnist(tmp_path, folder), input_shape=[1, 28, 28])
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 50, "val": 10, "test": 20}
    assert dm.splits["test"][0].shape == (20, 1, 28, 28)
    assert dm.splits["test"][1].tolist() == [i % 10 for i in range(20)]


def test_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    # torchvision checks the md5 of the official files; these are real-format files with other bytes
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    dm = setup_datamodule(CIFAR10DataModule, write_cifar10(tmp_path), input_shape=[3, 32, 32])
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 50, "val": 10, "test": 20}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32)
    augmented = dm.augment_batch(x)
    assert augmented.shape == x.shape


def test_decoded_tensors_are_cached(tmp_path, monkeypatch):
    root, cache = write_mnist(tmp_path / "d", "MNIST"), tmp_path / "cache"
    first = setup_datamodule(MNISTDataModule, root, cache_dir=str(cache), input_shape=[1, 28, 28])
    assert len(list(cache.glob("mnist-*.pt"))) == 1

    def no_decoding(self, train):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(MNISTDataModule, "_open", no_decoding)
    second = setup_datamodule(MNISTDataModule, root, cache_dir=str(cache), input_shape=[1, 28, 28])
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
    dm = setup_datamodule(
        MNISTDataModule,
        tmp_path / "empty",
        input_shape=[1, 28, 28],
        search_dirs=[str(tmp_path / "absent"), str(shared)],
    )
    assert len(dm.splits["test"][1]) > 0
    assert not (tmp_path / "empty").exists()  # nothing was downloaded or written there


def test_wrong_input_shape_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.input_shape=\[1, 32, 32\]"):
        setup_datamodule(MNISTDataModule, write_mnist(tmp_path, "MNIST"), input_shape=[1, 32, 32])
