"""The decoded-once, memory-mapped uint8 copy of an image folder, and how it is written safely.

Two files per cache key in `cache_dir`: `<key>.npy` (all images, N×C×H×W uint8, split after split)
and `<key>.meta.pt` (labels, split bounds, class names, the training split's pixel mean and std,
skipped files). The images are read back with `np.load(mmap_mode=...)`: the OS pages them in as
batches touch them, so a dataset larger than RAM trains, and DDP ranks on one node share one copy.

Writes follow the trust rule: each file goes to a temp name in the same folder, is flushed and
fsynced, then renamed; the meta file is written last and is what marks a cache complete, so a
build killed at any point leaves either the previous cache or none, never a torn one.
"""

import errno
import io
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from expkit.utils.atomic import failed_write
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

#: bump when the layout or the decoding changes: old caches are then rebuilt, not misread
FORMAT = 1


@dataclass(slots=True)
class Sample:
    file: str  # a path (a str: 20,000 Path objects cost ~0.3 s to build and sort)
    label: int
    split: str
    size: int = 0  # bytes and modification time, read once while listing: they key the cache
    mtime_ns: int = 0


@dataclass
class CacheMeta:
    labels: torch.Tensor  # int64, one per stored image
    bounds: dict[str, tuple[int, int]]  # split -> [start, stop) rows of the image array
    class_names: list[str]
    mean: list[float]  # per channel, in [0, 1] units, over the training split
    std: list[float]
    skipped: list[str]  # files that could not be read (data.on_error=skip)

    def to_dict(self) -> dict:
        return {"format": FORMAT, **self.__dict__}


def paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.npy", cache_dir / f"{key}.meta.pt"


def open_cache(
    cache_dir: Path, key: str, shape: Sequence[int]
) -> tuple[np.ndarray, CacheMeta] | None:
    """The cached images (memory-mapped, copy-on-write) and meta, or None when absent or stale."""
    images_path, meta_path = paths(cache_dir, key)
    if not meta_path.is_file():
        return None
    try:
        raw = torch.load(meta_path, weights_only=True)
        if raw.pop("format", None) != FORMAT:
            return None
        meta = CacheMeta(**raw)
        images = np.load(images_path, mmap_mode="c")
    except Exception as err:  # a foreign or damaged file: rebuild rather than fail
        log.warning("Ignoring unreadable image cache %s (%s)", meta_path, err)
        return None
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(shape):
        return None
    return images, meta


def build_cache(
    cache_dir: Path,
    key: str,
    samples: list[Sample],
    shape: Sequence[int],
    class_names: list[str],
    decode: Callable[[Path], np.ndarray],
    on_error: Callable[[Path, Exception], None],
    threads: int = 4,
) -> None:
    """Decode every sample (in `samples` order, splits contiguous) into the cache files."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    images_path, meta_path = paths(cache_dir, key)
    unique = f"{os.getpid()}-{secrets.token_hex(4)}"  # two builders never share a temp file
    tmp_images = images_path.with_name(f".{images_path.name}.tmp{unique}")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp{unique}")
    started = time.perf_counter()
    channels = shape[0]
    try:
        try:
            out = np.lib.format.open_memmap(
                tmp_images, mode="w+", dtype=np.uint8, shape=(len(samples), *shape)
            )
        except OSError as err:
            raise failed_write(images_path, err) from err
        _reserve(tmp_images, images_path)  # a full disk: OSError now, not SIGBUS mid-decode
        labels, skipped = [], []
        bounds: dict[str, list[int]] = {}
        total, total_sq, train_pixels = np.zeros(channels), np.zeros(channels), 0
        row = 0
        with _progress(len(samples), f"Decoding {len(samples)} images once") as advance:
            for sample, image in _decoded(samples, decode, threads):
                advance()
                if isinstance(image, Exception):
                    on_error(Path(sample.file), image)  # raises, unless skipping
                    skipped.append(str(sample.file))
                    continue
                chw = image.transpose(2, 0, 1)
                out[row] = chw
                start, _ = bounds.setdefault(sample.split, [row, row])
                bounds[sample.split] = [start, row + 1]
                labels.append(sample.label)
                if sample.split == "train":
                    flat = chw.reshape(channels, -1).astype(np.float64)
                    total += flat.sum(1)
                    total_sq += np.square(flat).sum(1)
                    train_pixels += flat.shape[1]
                row += 1
        out.flush()
        del out
        _fsync(tmp_images)
        mean = total / max(train_pixels, 1) / 255.0
        std = np.sqrt(np.maximum(total_sq / max(train_pixels, 1) / 255.0**2 - mean**2, 0))
        meta = CacheMeta(
            labels=torch.tensor(labels, dtype=torch.long),
            bounds={k: (int(a), int(b)) for k, (a, b) in bounds.items()},
            class_names=list(class_names),
            mean=mean.tolist(),
            std=np.where(std > 1e-6, std, 1.0).tolist(),
            skipped=skipped,
        )
        os.replace(tmp_images, images_path)
        buffer = io.BytesIO()  # torch.save to a file reports a full disk as RuntimeError
        torch.save(meta.to_dict(), buffer)
        try:
            with tmp_meta.open("wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise failed_write(meta_path, err) from err
        os.replace(tmp_meta, meta_path)  # last: its presence marks the cache complete
    finally:
        for tmp in (tmp_images, tmp_meta):
            tmp.unlink(missing_ok=True)
    log.info(
        "Decoded %d images into %s in %.1f s%s",
        row,
        images_path,
        time.perf_counter() - started,
        f" ({len(skipped)} unreadable, skipped)" if skipped else "",
    )


def _reserve(tmp: Path, final: Path) -> None:
    """Allocate the whole memory-mapped file now: writing into a mapped page that the disk has no
    room for kills the process with SIGBUS; `posix_fallocate` says ENOSPC instead (naming
    `final`)."""
    size = tmp.stat().st_size
    fd = os.open(tmp, os.O_RDWR)
    try:
        if hasattr(os, "posix_fallocate") and size:
            os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # a filesystem without it
            return
        raise failed_write(final, err) from err
    finally:
        os.close(fd)


def _decoded(
    samples: list[Sample], decode: Callable[[Path], np.ndarray], threads: int
) -> Iterator[tuple[Sample, np.ndarray | Exception]]:
    """(sample, image or the exception reading it), in order; Pillow decodes outside the GIL, so
    a few threads decode a few images at once."""

    def one(sample: Sample) -> np.ndarray | Exception:
        try:
            return decode(Path(sample.file))
        except Exception as err:  # named by the caller; any decoding failure counts as unreadable
            return err

    window = 64 * max(1, threads)  # bounded look-ahead: memory stays flat for any dataset size
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque = deque()
        for sample in samples:
            pending.append((sample, pool.submit(one, sample)))
            if len(pending) >= window:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


class _progress:
    """A rich progress bar while building (refreshed 4 times a second, not per image)."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description = total, description
        self.bar = Progress(transient=True, refresh_per_second=4)
        self.done = 0

    def __enter__(self) -> Callable[[], None]:
        try:
            self.bar.start()
        except Exception as err:  # another live display (rich allows one at a time): log only
            log.info("%s (no progress bar: %s)", self.description, err)
            self.bar = Progress(disable=True)
        task = self.bar.add_task(self.description, total=self.total)

        def advance() -> None:
            self.done += 1
            if self.done % 256 == 0 or self.done == self.total:
                self.bar.update(task, completed=self.done)

        return advance

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())
