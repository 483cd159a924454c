"""Reading one image file into the uint8 H×W×C array a dataset holds: the one place that decides how.

Used both when an image folder is decoded for training and when `predict.py` reads images, so a
picture is converted and resized the same way at training and at prediction time. Pillow reads
every format it has a plugin for (PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
"""

from pathlib import Path

import numpy as np

MODES = {1: "L", 3: "RGB"}


def image_suffixes() -> frozenset[str]:
    """Every file name ending Pillow can read (lower case, with the dot)."""
    from PIL import Image

    return frozenset(s.lower() for s in Image.registered_extensions())


def read_image(file: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """`file` as uint8 H×W×C with `channels` (grey or RGB), resized to `size` (H, W) when given:
    area-averaged when shrinking, bilinear when enlarging. Raises whatever Pillow raises."""
    from PIL import Image

    with Image.open(file) as image:
        image = image.convert(MODES[channels])
        if size is not None and (image.height, image.width) != tuple(size):
            height, width = size
            shrink = image.width >= width and image.height >= height
            resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
            image = image.resize((width, height), resample)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def image_size(file: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    from PIL import Image

    with Image.open(file) as image:
        return image.height, image.width
