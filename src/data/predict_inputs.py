"""What `predict.py input=…` reads: a dataset split, a folder of images (or one image), or a tensor file.

A split, image files and tensor files all end as raw images `N×C×H×W` at the dataset's pixel scale (what its `load_splits()` returns:
0..255, or 0..16 for digits), so the datamodule's own `normalize` then treats them exactly as it
treats its training data. Images are read with Pillow (installed with torchvision and matplotlib).
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from src.data.images import MODES, read_image
from src.data.in_memory import InMemoryDataModule
from src.utils.errors import ConfigError

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TENSOR_SUFFIXES = (".pt", ".pth")


@dataclass
class PredictInputs:
    """Images to predict, with an id per image and the true labels where the input has them."""

    ids: list[str]
    images: Tensor  # N×C×H×W at the raw pixel scale of the dataset (uint8 or float)
    labels: Tensor | None = None
    kind: str = "split"
    normalized: bool = (
        False  # True: ready for the network; False (every kind here): needs `normalize`
    )


def allowed() -> str:
    return (
        f"a split ({', '.join(SPLITS)}), a folder of images ({', '.join(IMAGE_SUFFIXES)}), "
        f"one image, or a tensor file ({', '.join(TENSOR_SUFFIXES)}) of N×C×H×W images"
    )


def load_inputs(value: str, datamodule: InMemoryDataModule) -> PredictInputs:
    """Read `input=value` into images shaped like the datamodule's (`data.input_shape`)."""
    value = str(value)
    if value in SPLITS:
        return _split(value, datamodule)
    path = Path(value)
    if path.is_dir():
        return _image_folder(path, datamodule)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return _images([path], path.parent, datamodule)
    if path.is_file() and path.suffix.lower() in TENSOR_SUFFIXES:
        return _tensor_file(path, datamodule)
    what = (
        "no such file or folder" if not path.exists() else f"unknown kind of file {path.suffix!r}"
    )
    raise ConfigError(
        f"input={value!r}: {what} (looked in {path.resolve()}). Allowed: {allowed()}."
    )


def _split(name: str, datamodule: InMemoryDataModule) -> PredictInputs:
    datamodule.setup("predict")
    images, labels = datamodule.splits[name]  # raw (uint8), normalized per batch like in training
    ids = [f"{name}/{i}" for i in range(len(labels))]
    return PredictInputs(ids, images.cpu(), labels.cpu(), "split")


def _image_folder(folder: Path, datamodule: InMemoryDataModule) -> PredictInputs:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ConfigError(
            f"input={str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}, searched "
            f"recursively). Allowed: {allowed()}."
        )
    return _images(files, folder, datamodule)


def _images(files: list[Path], root: Path, datamodule: InMemoryDataModule) -> PredictInputs:
    """Decode, convert to the data's channels (L or RGB), resize to its H×W (area average when
    shrinking, bilinear when enlarging), rescale 0..255 to the dataset's pixel scale."""
    import numpy as np

    if len(datamodule.input_shape) != 3:
        raise ConfigError(
            f"input: the run's data are not images (data.input_shape="
            f"{list(datamodule.input_shape)}); allowed: a split (test, val, train) or a tensor file."
        )
    channels, height, width = datamodule.input_shape
    if channels not in MODES:
        raise ConfigError(
            f"data.input_shape={list(datamodule.input_shape)}: images can be read for 1 or 3 "
            f"channels only; give a tensor file (.pt) for {channels} channels."
        )
    arrays = []
    for file in files:
        try:  # the same conversion and resizing as an image folder's training data
            arrays.append(read_image(file, channels, (height, width)))
        except OSError as err:
            raise ConfigError(f"input: cannot read image {file}: {err}") from None
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if datamodule.max_value != 255:  # e.g. digits: 0..255 file pixels → the dataset's 0..16
        images = images.float() * (datamodule.max_value / 255.0)
    ids = [str(f.relative_to(root)) for f in files]
    return PredictInputs(ids, images, None, "images")


def _tensor_file(path: Path, datamodule: InMemoryDataModule) -> PredictInputs:
    """`torch.save(images, path)`: N×C×H×W (or one C×H×W image) at the dataset's raw pixel scale
    (uint8 0..255 for MNIST/CIFAR, 0..16 for digits: what `load_splits()` returns)."""
    try:
        images = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"input={str(path)!r} is not a readable tensor file: {err}") from None
    if not isinstance(images, Tensor):
        raise ConfigError(
            f"input={str(path)!r} holds a {type(images).__name__}, not a tensor; save one "
            f"N×C×H×W tensor: torch.save(images, {path.name!r})."
        )
    expected = tuple(datamodule.input_shape)
    if images.dim() == len(expected):
        images = images.unsqueeze(0)
    if tuple(images.shape[1:]) != expected or images.is_complex() or images.dtype == torch.bool:
        raise ConfigError(
            f"input={str(path)!r} holds a {images.dtype} tensor of shape {list(images.shape)}; "
            f"allowed: uint8 or float N×{'×'.join(map(str, expected))} (data.input_shape)."
        )
    ids = [f"{path.name}/{i}" for i in range(len(images))]
    return PredictInputs(ids, images, None, "tensor")
