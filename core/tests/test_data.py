"""Datamodules: the bundled digits (the default data), batch order and DDP shards, and the classic
DataLoader path. The torchvision examples' loaders: tests/test_example_torchvision_data.py."""

import numpy as np
import pytest
import torch

from expkit.data.batch_loader import IndexBatchLoader
from expkit.data.digits import DigitsDataModule

RNG = np.random.default_rng(0)


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
