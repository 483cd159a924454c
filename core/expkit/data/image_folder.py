"""`data=image_folder data.root=DIR`: train on your own images, one subfolder per class, no code.

    DIR/cat/*.jpg, DIR/dog/*.png ...                      splits carved by split_seed
    DIR/train/cat/..., DIR/val/cat/..., DIR/test/cat/...  your own splits (val/, test/ optional)

Classes are the subfolder names (sorted; `class_names`, also in every checkpoint). Any format
Pillow reads; each image is converted to `input_shape`'s channels (grey or RGB) and resized to its
H×W. The folder is decoded once into a uint8 memory-mapped cache (`image_cache.py`) keyed by every
file's name, size and mtime and by the settings, so a changed file or setting rebuilds it and an
unchanged folder starts in well under a second. Batches then come from tensor indexing, are
normalized on the device with the training split's own per-channel mean and std, and are
augmented there (`augment`: flip + shift); `num_workers > 0` gives a classic DataLoader with a
per-sample `transform` instead.
"""

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from expkit.data.augment import random_hflip, random_shift
from expkit.data.image_cache import FORMAT, Sample, build_cache, open_cache
from expkit.data.images import MODES, image_size, image_suffixes, read_image
from expkit.data.in_memory import InMemoryDataModule, Split
from expkit.errors import ConfigError, DatasetNotFoundError
from expkit.utils.logging_utils import get_logger
from expkit.utils.shown_path import shown_path

log = get_logger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
ON_ERROR = ("fail", "skip")


class ImageFolderDataModule(InMemoryDataModule):
    """Images from class subfolders, decoded once into a memory-mapped uint8 cache."""

    name = "image_folder"

    def __init__(
        self,
        root: str,
        num_classes: int,
        input_shape: Sequence[int],
        resize: bool = True,
        test_size: float | int = 0.1,
        on_error: str = "fail",
        decode_threads: int = 4,
        **kwargs,
    ) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, **kwargs)
        if on_error not in ON_ERROR:
            raise ConfigError(f"data.on_error={on_error!r} is not allowed; allowed: fail, skip.")
        if len(self.input_shape) != 3 or self.input_shape[0] not in MODES:
            raise ConfigError(
                f"data.input_shape={list(self.input_shape)}: images are read as [1, H, W] (grey) "
                "or [3, H, W] (RGB)."
            )
        self.root = Path(root)
        self.mean, self.std = (0.5,) * self.input_shape[0], (0.5,) * self.input_shape[0]
        self.skipped: list[str] = []
        self._opened = None

    # ---- the folder -----------------------------------------------------------------------------
    def _scan(self) -> tuple[list[Sample], list[str]]:
        """Every image with its label and split (splits in train, val, test order), class names."""
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"data.root={str(self.root)!r} is not a folder (looked in "
                f"{shown_path(self.root)}); "
                "give a folder with one subfolder of images per class."
            )
        has_splits = (self.root / "train").is_dir()
        tops = {s: self.root / s for s in SPLIT_FOLDERS if (self.root / s).is_dir()}
        if not has_splits:
            tops = {"all": self.root}
        class_dirs = sorted(
            p.name
            for p in tops.get("train", self.root).iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )
        if not class_dirs:
            raise DatasetNotFoundError(
                f"data.root={str(self.root)!r} has no class subfolders; expected "
                f"{self.root}/<class>/<image> (or {self.root}/train/<class>/<image>)."
            )
        suffixes = image_suffixes()
        files: dict[str, list[Sample]] = {}
        for split, top in tops.items():
            files[split] = []
            for label, name in enumerate(class_dirs):
                folder = top / name
                found = _list_images(folder, suffixes, label) if folder.is_dir() else []
                if not found and split in ("all", "train"):
                    raise ConfigError(
                        f"class folder {folder} holds no images (readable endings include .png, "
                        ".jpg, .bmp, .gif, .tif, .webp); add images or remove the folder."
                    )
                files[split] += found
            extra = sorted(p.name for p in top.iterdir() if p.is_dir() and p.name not in class_dirs)
            if extra:
                raise ConfigError(
                    f"{top} has class folders {extra} that {tops.get('train', self.root)} lacks; "
                    f"every split must use the classes of the training folder: {class_dirs}."
                )
        return self._assign_splits(files), class_dirs

    def _assign_splits(self, files: dict[str, list[Sample]]) -> list[Sample]:
        """Keep the folder's splits; carve the missing val/test from train (or from all) by seed."""
        pool = files.get("train", files.get("all", []))
        order = torch.randperm(
            len(pool), generator=torch.Generator().manual_seed(self.hparams.split_seed)
        ).tolist()
        carved: dict[str, list[int]] = {"train": order}
        for split, size in (("test", self.hparams.test_size), ("val", self.hparams.val_size)):
            if split in files or (split == "val" and self.hparams.folds):  # CV: the fold is val
                continue
            n = int(round(size * len(pool))) if isinstance(size, float) else int(size)
            if not 0 < n < len(carved["train"]):
                raise ConfigError(
                    f"data.{split}_size={size!r} leaves no {split} or no train images out of "
                    f"{len(pool)}; allowed: a fraction in (0, 1) or a count in [1, n-1]."
                )
            carved[split], carved["train"] = carved["train"][:n], carved["train"][n:]
        samples = []
        for split in SPLIT_FOLDERS:
            chosen = (
                [pool[i] for i in sorted(carved[split])]
                if split in carved
                else files.get(split, [])
            )
            for sample in chosen:
                sample.split = split
            samples += chosen
        return samples

    def _key(self, samples: list[Sample]) -> str:
        """Names, sizes and mtimes of every file, and every setting that changes the decoded bytes."""
        hp = self.hparams
        digest = hashlib.sha1(
            f"{FORMAT}|{shown_path(self.root)}|{list(self.input_shape)}|{hp.resize}|{hp.on_error}|"
            f"{'no-val' if hp.folds else hp.val_size}|{hp.test_size}|{hp.split_seed}|"
            f"{self.cache_settings()}".encode()  # a subclass's own arguments too
        )
        for s in samples:
            digest.update(f"{s.file}|{s.label}|{s.split}|{s.size}|{s.mtime_ns}\n".encode())
        return f"{self.name}-{self.root.name}-{digest.hexdigest()[:16]}"

    def _cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.root / ".cache"

    # ---- decoding ---------------------------------------------------------------------------------
    def _decode(self, file: Path) -> np.ndarray:
        channels, height, width = self.input_shape
        if not self.hparams.resize:
            size = image_size(file)
            if size != (height, width):
                raise _SizeError(
                    f"data.resize=false but {file} is {size[1]}×{size[0]} pixels, not "
                    f"{width}×{height} (data.input_shape={list(self.input_shape)}); set "
                    "data.resize=true, or data.input_shape to the images' size."
                )
        return read_image(file, channels, (height, width))

    def _on_error(self, file: Path, err: Exception) -> None:
        if isinstance(err, _SizeError):
            raise ConfigError(str(err))
        if self.hparams.on_error == "fail":
            raise ConfigError(
                f"cannot read image {file} ({type(err).__name__}: {' '.join(str(err).split())}); "
                "fix or remove it, or set data.on_error=skip."
            )
        log.warning("Skipping unreadable image %s (%s)", file, err)

    def _ensure_cache(self):
        """The cache's images and meta: listed, keyed and opened (or built) once per instance."""
        if self._opened is None:
            self._opened = self._open_or_build()
        return self._opened

    def _open_or_build(self):
        samples, class_names = self._scan()
        if len(class_names) != self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but {self.root} has {len(class_names)} class "
                f"folders ({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''}); "
                f"set data.num_classes={len(class_names)}."
            )
        key = self._key(samples)
        cached = open_cache(self._cache_dir(), key, self.input_shape)
        if cached is None:
            build_cache(
                self._cache_dir(),
                key,
                samples,
                self.input_shape,
                class_names,
                decode=self._decode,
                on_error=self._on_error,
                threads=self.hparams.decode_threads,
            )
            cached = open_cache(self._cache_dir(), key, self.input_shape)
            if cached is None:
                raise DatasetNotFoundError(f"the image cache {self._cache_dir()}/{key} vanished")
        return cached

    # ---- LightningDataModule ------------------------------------------------------------------
    def prepare_data(self) -> None:
        """One process per node builds the cache (with a progress bar); the others read it."""
        self._ensure_cache()

    def load_splits(self) -> dict[str, Split]:
        images, meta = self._ensure_cache()
        if not getattr(self, "_restored", False):  # a checkpoint's own stats win
            self.mean, self.std = tuple(meta.mean), tuple(meta.std)
            self.class_names = list(meta.class_names)
        self._stats = {}
        self.skipped = list(meta.skipped)
        splits = {}
        for split, (start, stop) in meta.bounds.items():
            # views of the memory map: nothing is read until a batch touches it
            splits[split] = (torch.from_numpy(images[start:stop]), meta.labels[start:stop])
        needed = [s for s in SPLIT_FOLDERS if not (s == "val" and self.hparams.folds)]
        missing = [s for s in needed if s not in splits]
        if missing:
            raise ConfigError(
                f"{self.root}: no readable images left for split(s) {missing}; add images there."
            )
        return splits

    def _cached(self, load):
        return load()  # this datamodule keeps its own memory-mapped cache

    def _load_and_split(self) -> dict[str, Split]:
        return self.load_splits()

    def augment_batch(self, x: torch.Tensor) -> torch.Tensor:
        return random_hflip(random_shift(x, pad=max(1, self.input_shape[1] // 16)))

    def state_dict(self) -> dict:
        """Class names and the pixel mean/std the run trained with (stored in checkpoints)."""
        return {**super().state_dict(), "mean": list(self.mean), "std": list(self.std)}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.mean = tuple(state_dict.get("mean", self.mean))
        self.std = tuple(state_dict.get("std", self.std))
        self._stats, self._restored = {}, True


class _SizeError(ValueError):
    """An image whose size differs from input_shape while resizing is off (a config error)."""


def _list_images(folder: Path, suffixes: frozenset[str], label: int) -> list[Sample]:
    """Image files under `folder` (recursively, hidden ones skipped), sorted, with their size and
    mtime from one `stat` each (rglob + is_file + stat costs three)."""
    found, stack = [], [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):  # a linked folder could loop forever
                    stack.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in suffixes:
                    st = entry.stat()
                    found.append(Sample(entry.path, label, "", st.st_size, st.st_mtime_ns))
    found.sort(key=lambda s: s.file)
    return found
