"""What a folder of images says about itself: its classes and its images' channels and size.

Used by `configs/data/image_folder.yaml` through the resolvers `${folder_classes:…}` and
`${folder_image_shape:…}`, so `data=image_folder data.root=DIR` needs no `data.num_classes` or
`data.input_shape`, and the model config still follows `${data.num_classes}` by interpolation (an
interpolation is resolved when read, after the command line set `data.root`). A value typed on the
command line replaces the resolver, and the datamodule still checks it against the folder.
"""

import functools
from pathlib import Path

from expkit.errors import DatasetNotFoundError
from expkit.utils.shown_path import shown_path

#: Pillow modes with one channel (grey), alpha included
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _class_root(root: Path) -> Path:
    """Where the class folders are: `root/train` when the folder has its own splits."""
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"data.root={str(root)!r} is not a folder (looked in {shown_path(root)}); give a folder "
            "with one subfolder of images per class."
        )
    return root / "train" if (root / "train").is_dir() else root


def class_folders(root: str | Path) -> list[str]:
    """The class subfolder names, sorted as the datamodule labels them."""
    top = _class_root(Path(root))
    return sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_classes(root: str) -> int:
    """`${folder_classes:${.root}}`: the number of class subfolders."""
    names = class_folders(root)
    if not names:
        raise DatasetNotFoundError(
            f"data.root={root!r} has no class subfolders; expected {root}/<class>/<image> "
            f"(or {root}/train/<class>/<image>)."
        )
    return len(names)


@functools.cache
def _modes_and_sizes(root: str) -> tuple[frozenset[str], frozenset[tuple[int, int]]]:
    """Every training image's Pillow mode and (height, width), read from the file headers."""
    from PIL import Image, UnidentifiedImageError

    top = _class_root(Path(root))
    suffixes = {s.lower() for s in Image.registered_extensions()}
    modes, sizes = set(), set()
    for name in class_folders(root):
        for file in sorted((top / name).iterdir()):
            if file.suffix.lower() not in suffixes or file.name.startswith("."):
                continue
            try:
                with Image.open(file) as image:
                    modes.add(image.mode)
                    sizes.add((image.height, image.width))
            except (OSError, UnidentifiedImageError):
                continue  # the datamodule reports unreadable files (data.on_error)
    return frozenset(modes), frozenset(sizes)


def folder_image_shape(root: str, size: int = 64) -> list[int]:
    """`${folder_image_shape:${.root},64}`: [channels, H, W]. One channel when every image is
    grey, else 3 (RGB); the images' own H×W when they all share one, else `size`×`size`."""
    _class_root(Path(root))  # a missing folder or a symlink loop: one line, before resolving it
    modes, sizes = _modes_and_sizes(str(Path(root).resolve()))
    channels = 1 if modes and modes <= GREY_MODES else 3
    height, width = next(iter(sizes)) if len(sizes) == 1 else (size, size)
    return [channels, int(height), int(width)]
