"""What `predict.py input=…` reads: a split of the datamodule, a folder of images (or one image), or
a tensor file.

- A split (`predict`, `test`, `val`, `train`; `expkit/data/loaders.py`): the datamodule's own
  dataloader, its batches exactly as it yields them (its batch hooks run too).
- Files become a batch tensor `N×…` the module takes as its input:
  - a datamodule with `normalize(x)` (ours: `expkit/data/in_memory.py`) takes raw samples at its
    dataset's pixel scale (what its `load_splits()` returns: 0..255, 0..16 for digits) and its
    `input_shape`; images are rescaled to that scale, then everything goes through `normalize`,
    exactly as its training data does;
  - any other datamodule: the sample shape is that of one of its own batches; each image goes
    through the datamodule's `transform` attribute as a PIL image when it has one (what
    torchvision datasets do per sample), else becomes floats in 0..1 (torchvision's `ToTensor`);
    a tensor file is taken as it is (already what the module takes).
Images are read with Pillow; one that declares more pixels than Pillow's decompression-bomb limit
(`PIL.Image.MAX_IMAGE_PIXELS`) is refused before it is decoded.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from expkit.checkpoints.load import read_torch_file
from expkit.data.images import MODES, read_image
from expkit.data.loaders import SPLITS, input_samples, split_loader
from expkit.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TENSOR_SUFFIXES = (".pt", ".pth")


@dataclass
class PredictInputs:
    """A split's dataloader, or samples read from files with one id each."""

    kind: str  # "split" | "images" | "tensor"
    name: str  # the split that runs, or the file / folder read
    loader: Any = None  # a split: the datamodule's dataloader
    samples: Tensor | None = None  # files: N×… as the module takes them
    ids: list[str] = field(default_factory=list)  # files: one per sample


def allowed() -> str:
    return (
        f"a split ({', '.join(SPLITS)}), a folder of images ({', '.join(IMAGE_SUFFIXES)}), "
        f"one image, or a tensor file ({', '.join(TENSOR_SUFFIXES)}) of N samples"
    )


def load_inputs(value: str, datamodule: pl.LightningDataModule) -> PredictInputs:
    """Read `input=value` (see the module docstring)."""
    value = str(value)
    if value in SPLITS:
        name, loader = split_loader(datamodule, value)
        return PredictInputs("split", name, loader=loader)
    path = Path(value)
    if path.is_dir():
        return _images(_image_files(path), path, datamodule, str(path))
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return _images([path], path.parent, datamodule, str(path))
    if path.is_file() and path.suffix.lower() in TENSOR_SUFFIXES:
        return _tensor_file(path, datamodule)
    what = (
        "no such file or folder" if not path.exists() else f"unknown kind of file {path.suffix!r}"
    )
    raise ConfigError(
        f"input={value!r}: {what} (looked in {path.resolve()}). Allowed: {allowed()}."
    )


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ConfigError(
            f"input={str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}, searched "
            f"recursively). Allowed: {allowed()}."
        )
    return files


def _sample_shape(datamodule: pl.LightningDataModule) -> tuple[int, ...]:
    """One sample's shape: the datamodule's `input_shape` where it declares one, else that of
    its own predict (else test) batches."""
    declared = getattr(datamodule, "input_shape", None)
    if declared is not None:
        return tuple(int(n) for n in declared)
    return tuple(input_samples(datamodule, 1)[1].shape[1:])


def _images(
    files: list[Path], root: Path, datamodule: pl.LightningDataModule, value: str
) -> PredictInputs:
    """Decode, convert to the data's channels (L or RGB), resize to its H×W (area average when
    shrinking, bilinear when enlarging), then scale as the module docstring says."""
    import numpy as np

    shape = _sample_shape(datamodule)
    if len(shape) != 3 or shape[0] not in MODES:
        raise ConfigError(
            f"input={value!r}: the model's inputs are not 1- or 3-channel images (one sample is "
            f"{list(shape)}); allowed: a split ({', '.join(SPLITS)}) or a tensor file."
        )
    channels, height, width = shape
    arrays = [_read(file, channels, (height, width)) for file in files]
    ids = [str(f.relative_to(root)) for f in files]
    normalize = getattr(datamodule, "normalize", None)
    if callable(normalize):
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        max_value = float(getattr(datamodule, "max_value", 255.0))
        if max_value != 255:  # e.g. digits: 0..255 file pixels → the dataset's 0..16
            images = images.float() * (max_value / 255.0)
        return PredictInputs("images", value, samples=normalize(images), ids=ids)
    transform = getattr(datamodule, "transform", None)
    samples = [_transformed(a, transform, shape, f) for a, f in zip(arrays, files, strict=True)]
    return PredictInputs("images", value, samples=torch.stack(samples), ids=ids)


def _read(file: Path, channels: int, size: tuple[int, int]):
    from PIL import Image

    try:  # the same conversion and resizing as an image folder's training data
        with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return read_image(file, channels, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ConfigError(
            f"input: image {file} is refused: {_first_line(err)} Allowed: images of at most "
            f"{Image.MAX_IMAGE_PIXELS} pixels (Pillow's decompression-bomb limit)."
        ) from None
    except Exception as err:  # whatever Pillow raises for a file it cannot decode
        raise ConfigError(f"input: cannot read image {file}: {_first_line(err)}") from None


def _transformed(array, transform: Any, shape: tuple[int, ...], file: Path) -> Tensor:
    from PIL import Image

    if not callable(transform):
        return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
    image = Image.fromarray(array[..., 0] if shape[0] == 1 else array)
    sample = transform(image)
    if not isinstance(sample, Tensor) or tuple(sample.shape) != shape:
        got = list(sample.shape) if isinstance(sample, Tensor) else type(sample).__name__
        raise ConfigError(
            f"input: the datamodule's transform turned image {file} into {got}, not a tensor "
            f"of the model's input shape {list(shape)}; give a tensor file instead."
        )
    return sample


def _tensor_file(path: Path, datamodule: pl.LightningDataModule) -> PredictInputs:
    """`torch.save(samples, path)`: N×… (or one sample); see the module docstring for its scale."""
    subject = f"input={str(path)!r}"
    samples = read_torch_file(
        path,
        subject,
        "a file written by torch.save(tensor) holding N samples",
        kind="tensor file",
        error=ConfigError,
    )
    if not isinstance(samples, Tensor):
        raise ConfigError(
            f"{subject} holds a {type(samples).__name__}, not a tensor; save one tensor of N "
            f"samples: torch.save(samples, {path.name!r})."
        )
    expected = _sample_shape(datamodule)
    if samples.dim() == len(expected):
        samples = samples.unsqueeze(0)
    shown = "×".join(map(str, expected))
    if tuple(samples.shape[1:]) != expected or samples.is_complex() or samples.dtype == torch.bool:
        raise ConfigError(
            f"{subject} holds a {samples.dtype} tensor of shape {list(samples.shape)}; "
            f"allowed: uint8 or float N×{shown} (the model's input)."
        )
    if len(samples) == 0:
        raise ConfigError(
            f"{subject} holds no samples (shape {list(samples.shape)}); allowed: N×{shown}, N >= 1."
        )
    normalize = getattr(datamodule, "normalize", None)
    if callable(normalize):
        samples = normalize(samples)
    ids = [f"{path.name}/{i}" for i in range(len(samples))]
    return PredictInputs("tensor", str(path), samples=samples, ids=ids)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
