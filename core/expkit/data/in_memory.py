"""Base LightningDataModule for datasets held as tensors (digits, MNIST, Fashion-MNIST, CIFAR-10,
your own image folder or table).

Samples are decoded once into one tensor per split at the source's own dtype (uint8 pixels; cached
under `data/cache/`, memory-mapped when read back), batched by indexing (`IndexBatchLoader`), and
normalized and augmented per batch on the device they train on (`on_after_batch_transfer`). Keeping
uint8 rather than normalized float32 holds a quarter of the bytes (MNIST: 55 MB instead of 55 + 220
MB; `/usr/bin/time -v` max RSS of `train.py data=mnist trainer.max_epochs=1` 1.03 GB instead of
1.09-1.12 GB), and the per-batch cost is small: an `index_select` of 128 uint8 images plus the
normalization took ~33 us on this CPU, the old float `x[idx]` gather ~37 us. On a GPU the splits
stay in device memory (`keep_on_device`).
Set `num_workers > 0` to get a classic `DataLoader` instead, with an optional per-sample `transform`
(Lightning then shards it under DDP). A subclass only says how to read its files: `load_splits()`.

Cross-validation (`cv.folds=k` sets `fold`, `folds`, `fold_seed`): the val split is fold `fold` of
the training data (train plus any val the source has; none is carved), the rest of it trains, and
the test split is the source's own, untouched (`expkit/data/folds.py` picks the fold). The fold's
samples are gathered into new tensors (the training data is then held in memory, not mapped).
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from expkit.data.augment import random_shift
from expkit.data.batch_loader import IndexBatchLoader
from expkit.data.folds import check_fold_settings, fold_indices
from expkit.errors import ConfigError
from expkit.utils.atomic import atomic_torch_save
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

Split = tuple[Tensor, Tensor]


class SplitDataset(Dataset):
    """One split as a map-style dataset for the `num_workers > 0` path: sample i, transformed."""

    def __init__(self, x: Tensor, y: Tensor, transform: Callable[[Tensor], Tensor] | None) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.x[i]
        return (self.transform(x) if self.transform is not None else x), self.y[i]


#: constructor arguments that never change the decoded splits: how they are batched, loaded,
#: augmented or stored, and which fold is held out (the folds are cut after the cache)
NOT_IN_CACHE_KEY = frozenset(
    {
        "batch_size",
        "eval_batch_size",
        "num_workers",
        "pin_memory",
        "augment",
        "download",
        "seed",
        "cache_dir",
        "keep_on_device",
        "fold",
        "folds",
        "fold_seed",
        "data_dir",
        "search_dirs",  # where the files were found: the files' own identity is in the key
    }
)


class InMemoryDataModule(pl.LightningDataModule):
    """Holds `train`/`val`/`test` splits as `(raw samples N×C×H×W, targets)`: uint8 pixels at the
    dataset's own scale (`max_value`), normalized per batch by `normalize`."""

    name: str = "dataset"
    mean: Sequence[float] = (0.5,)
    std: Sequence[float] = (0.5,)
    max_value: float = 255.0  # raw pixel value that maps to 1.0
    classes: Sequence[str] = ()  # class names in label order; empty: "0", "1", ...

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        val_size: float | int = 0.1,
        num_workers: int = 0,
        pin_memory: bool = False,
        augment: bool = False,
        download: bool = True,
        seed: int = 0,
        split_seed: int = 12345,
        cache_dir: str | None = None,
        keep_on_device: bool = True,
        transform: Callable[[Tensor], Tensor] | None = None,
        fold: int | None = None,
        folds: int | None = None,
        fold_seed: int = 0,
    ) -> None:
        super().__init__()
        if folds is not None:
            check_fold_settings(fold, folds)
            if fold is None:
                raise ConfigError(
                    f"data.folds={folds} needs data.fold (0 to {folds - 1}): a datamodule holds "
                    f"one fold (cv.folds={folds} with cv.fold=null runs every fold)."
                )
        # the transform is an object: checkpoints keep plain values only (weights_only loading)
        self.save_hyperparameters(ignore=["transform"], logger=False)
        self.transform = transform
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.data_dir = Path(data_dir) if data_dir else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.splits: dict[str, Split] = {}
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}
        #: one name per class, in label order (predictions can be written with them)
        self.class_names: list[str] = list(self.classes) or [str(i) for i in range(num_classes)]

    # ---- what a subclass provides -------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        """Read the files; return at least `train` and `test` (a missing `val` is carved from train)."""
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """Files the splits are read from; their sizes and dates key the decoded-tensor cache."""
        return []

    def augment_batch(self, x: Tensor) -> Tensor:
        """Training-time augmentation of a normalized float batch (default: shift by up to 2 px)."""
        return random_shift(x, pad=2)

    # ---- LightningDataModule ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self._cached(self._load_and_split)
        if self.hparams.folds:
            splits = self._with_fold(splits)
        for split, (x, y) in splits.items():
            self._check_shapes(split, x, y)
        self.splits = self._to_training_device(splits)
        order: list[str] = [s for s in ("train", "val", "test") if s in self.splits]
        order += [s for s in self.splits if s not in order]
        sizes = " · ".join(f"{s} {len(self.splits[s][1])}" for s in order)
        log.info("data %s: %s", self.name, sizes)

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def predict_dataloader(self):
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Normalize every batch, and augment training batches, on the device they run on.

        Lightning also passes a module's `example_input_array` through here (the model summary):
        anything that is not an (inputs, targets) pair of this data goes through unchanged."""
        if not (isinstance(batch, list | tuple) and len(batch) == 2):
            return batch
        x, y = batch
        x = self.normalize(x)
        if self.hparams.augment and self.trainer is not None and self.trainer.training:
            x = self.augment_batch(x)
        return x, y

    def state_dict(self) -> dict:
        """What Lightning stores in checkpoints under this class's name: the class names."""
        return {"class_names": list(self.class_names)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.class_names = list(state_dict.get("class_names", self.class_names))

    # ---- helpers ------------------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """uint8 (or raw-valued) images → float, scaled to [0, 1], then standardized per channel."""
        if x.device not in self._stats:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean, device=x.device).view(shape) * self.max_value
            std = torch.tensor(self.std, device=x.device).view(shape) * self.max_value
            self._stats[x.device] = (mean, 1.0 / std)
        mean, inv_std = self._stats[x.device]
        # one float copy, then in place: no extra batch-sized temporaries
        return x.to(torch.float32, copy=True).sub_(mean).mul_(inv_std)

    def _to_training_device(self, splits: dict[str, Split]) -> dict[str, Split]:
        """On a GPU, hold the (uint8) splits in its memory: no host-to-device copy per batch."""
        trainer = self.trainer
        if not self.hparams.keep_on_device or self.hparams.num_workers > 0 or trainer is None:
            return splits
        device = trainer.strategy.root_device
        if device.type == "cpu":
            return splits
        log.info("%s: keeping the data on %s", self.name, device)
        return {k: (x.to(device), y.to(device)) for k, (x, y) in splits.items()}

    def _loader_context(self) -> tuple[int, int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        return trainer.current_epoch, trainer.global_rank, trainer.world_size

    def _loader(self, split: str, train: bool):
        x, y = self.splits[split]
        hp = self.hparams
        batch_size = hp.batch_size if train else hp.eval_batch_size
        overfitting = self.trainer is not None and self.trainer.overfit_batches > 0
        shuffle = (
            train and not overfitting
        )  # overfit_batches means: the same few batches every epoch
        if hp.num_workers > 0:
            return DataLoader(
                SplitDataset(x, y, self.transform if train else None),
                batch_size=batch_size,
                shuffle=shuffle,
                num_workers=hp.num_workers,
                pin_memory=hp.pin_memory,
                persistent_workers=True,
            )
        return IndexBatchLoader(
            x,
            y,
            batch_size,
            shuffle=shuffle,
            seed=hp.seed,
            pad_shards=train,
            context=self._loader_context,
        )

    def _load_and_split(self) -> dict[str, Split]:
        splits = self.load_splits()
        if "val" not in splits and not self.hparams.folds:  # cross-validation: the fold is val
            splits["train"], splits["val"] = self._carve_val(*splits["train"])
        return splits

    # ---- cross-validation ---------------------------------------------------------------------
    #: folds keep each class's share (class targets); a subclass with numeric targets says False
    stratified_folds: bool = True

    def fold_indices(self, targets: Sequence | Tensor) -> tuple[Tensor, Tensor]:
        """(train, val) indices of this run's fold of a training set with these targets."""
        hp = self.hparams
        train, val = fold_indices(
            targets.cpu().numpy() if isinstance(targets, Tensor) else targets,
            hp.fold,
            hp.folds,
            hp.fold_seed,
            self.stratified_folds,
            what=f"the {self.name} training data",
            class_names=self.class_names,
        )
        return torch.from_numpy(train), torch.from_numpy(val)

    def _with_fold(self, splits: dict[str, Split]) -> dict[str, Split]:
        """Train and val become the training data without / with fold `fold`; test stays."""
        parts = [splits["train"], *([splits["val"]] if "val" in splits else [])]
        x = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        train, val = self.fold_indices(y)
        return {**splits, "train": (x[train], y[train]), "val": (x[val], y[val])}

    def _carve_val(self, x: Tensor, y: Tensor) -> tuple[Split, Split]:
        size = self.hparams.val_size
        n_val = int(round(size * len(y))) if isinstance(size, float) else int(size)
        if not 0 < n_val < len(y):
            raise ConfigError(
                f"data.val_size={size!r} leaves no train or no val samples out of {len(y)}; "
                "allowed: a fraction in (0, 1) or a count in [1, n-1]."
            )
        order = torch.randperm(
            len(y), generator=torch.Generator().manual_seed(self.hparams.split_seed)
        )
        val, train = order[:n_val], order[n_val:]
        return (x[train], y[train]), (x[val], y[val])

    def _check_shapes(self, split: str, x: Tensor, y: Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(
                f"data.input_shape={list(self.input_shape)} but the {self.name} {split} images are "
                f"{list(x.shape[1:])}; set data.input_shape to match."
            )
        if len(y) and int(y.max()) >= self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but the {self.name} {split} labels go up to "
                f"{int(y.max())}; set data.num_classes={int(y.max()) + 1}."
            )

    def _cache_path(self) -> Path | None:
        """Keyed by every constructor argument that can change the decoded splits (a subclass's
        own arguments included: `n_samples`, `noise`...) and by the source files' identity."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha1(
            f"{type(self).__module__}.{type(self).__qualname__}|{self.data_dir}|"
            f"{self.cache_settings()}".encode()
        )
        for f in sorted(self.source_files()):
            st = f.stat()
            key.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        return self.cache_dir / f"{self.name}-{key.hexdigest()[:12]}.pt"

    def cache_settings(self) -> str:
        """Every constructor argument that can change the decoded data, as one stable string.
        The val split is carved before caching, so its settings are in it; cross-validation
        carves none (one cache for every fold)."""
        hp = dict(self.hparams)
        settings = {k: v for k, v in hp.items() if k not in NOT_IN_CACHE_KEY}
        if hp.get("folds"):
            settings["val_size"] = "no-val"
        return json.dumps(settings, sort_keys=True, default=repr)

    def _cached(self, load: Callable[[], dict[str, Split]]) -> dict[str, Split]:
        """Decode once: later runs read the tensors back (`weights_only=True`: plain tensors only)."""
        path = self._cache_path()
        if path is not None and path.is_file():
            try:
                data = torch.load(path, weights_only=True, mmap=True)  # no copy: pages on demand
                return {k: (v["x"], v["y"]) for k, v in data.items()}
            except Exception as err:  # a torn write or an old format: decode again
                log.warning("Ignoring unreadable cache %s (%s)", path, err)
        splits = load()
        if path is not None:
            try:  # whole or absent under its final name, even after a crash or a full disk
                atomic_torch_save({k: {"x": x, "y": y} for k, (x, y) in splits.items()}, path)
            except OSError as err:  # a cache is an optimization: train without it
                log.warning("Could not write the decoded-data cache %s: %s", path, err)
        return splits
