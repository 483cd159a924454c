"""Batches by indexing preloaded tensors: the fast path for datasets that fit in memory.

A `DataLoader` over per-sample transforms spends most of a small model's epoch in Python; slicing one
uint8 tensor per batch costs microseconds. Lightning accepts any sized iterable as a dataloader, so
this class is all the "loader" needed. Written by hand because torch ships no index-batching loader
that is also shard-aware and epoch-deterministic.
"""

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


class IndexBatchLoader:
    """Yields `(x, y)` batches from tensors, shuffled by a pure function of `(seed, epoch)`.

    - Same order for epoch k whether or not the run was restarted before it (exact resume).
    - Under DDP each rank takes a strided shard of the permutation; shards are padded to equal length
      for training (equal batch counts on every rank, or DDP would hang) and left unpadded for
      evaluation (every sample counted exactly once).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        pad_shards: bool = False,
        context: Callable[[], tuple[int, int, int]] | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.pad_shards = drop_last, pad_shards
        self.context = context  # -> (epoch, rank, world_size), asked when an epoch starts
        self.epoch, self.rank, self.world_size = 0, 0, 1

    def _refresh_context(self) -> None:
        if self.context is not None:
            self.epoch, self.rank, self.world_size = self.context()

    def _indices(self) -> Tensor:
        n = len(self.y)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.pad_shards:
                per_rank = -(-n // self.world_size)
                order = torch.cat([order, order[: per_rank * self.world_size - n]])
            order = order[self.rank :: self.world_size]
        return order.to(self.x.device)

    def _num_samples(self) -> int:
        n, w = len(self.y), self.world_size
        if w == 1:
            return n
        return -(-n // w) if self.pad_shards else len(range(self.rank, n, w))

    def __len__(self) -> int:
        self._refresh_context()
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self._refresh_context()
        order = self._indices()
        contiguous = not self.shuffle and self.world_size == 1
        for i in range(len(self)):
            if contiguous:
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                yield self.x[sl], self.y[sl]
            else:
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                # index_select, not x[idx]: 6 us instead of 40 us for 128 MNIST images on a CPU
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
