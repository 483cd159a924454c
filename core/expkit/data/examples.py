"""Small real data that ships with scikit-learn, to try `data=csv` and `data=image_folder` offline.

Tables: `sklearn:wine` (178 rows, 13 numeric features, 3 classes), `sklearn:iris` (150 rows, 4
features, 3 classes), `sklearn:diabetes` (442 rows, 10 features, a numeric target: regression). A
`data.path` of that form reads the table directly; `python -m expkit.data.examples wine data/wine.csv`
writes it as a CSV file, to try `data.path=<file>` exactly as with your own table.
Images: `python -m expkit.data.examples digits_images data/digits_images` writes the 1,797 8×8 digits
as PNG files in one subfolder per class, the layout `data=image_folder` reads.
"""

import argparse
import os
from pathlib import Path

import pandas as pd

from expkit.errors import ConfigError
from expkit.utils.atomic import atomic_open

PREFIX = "sklearn:"
TABLES = ("wine", "iris", "diabetes")


def is_example(path: str) -> bool:
    return str(path).startswith(PREFIX)


def load_example_table(name: str) -> pd.DataFrame:
    """The table with its features and a `target` column (class names for the classifications)."""
    from sklearn import datasets  # imported here: only these tables need sklearn

    name = name.removeprefix(PREFIX)
    if name not in TABLES:
        raise ConfigError(
            f"data.path={PREFIX}{name!r} is not a bundled table; allowed: "
            f"{', '.join(PREFIX + t for t in TABLES)}, or the path of a CSV file."
        )
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    if name != "diabetes":  # class names instead of 0, 1, 2: predictions then read as names
        frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    return frame


def write_example_table(name: str, path: str | Path) -> Path:
    """Write the table as CSV, atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as f:
        load_example_table(name).to_csv(f, index=False)
    return path


def write_digits_images(folder: str | Path) -> Path:
    """scikit-learn's digits as `folder/<digit>/<index>.png` (8×8 grey, 0..16 scaled to 0..255).
    Each file is written to a temp name and renamed, so a rerun never leaves a torn PNG."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = Path(folder)
    bunch = load_digits()
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        path = folder / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*TABLES, "digits_images"])
    parser.add_argument(
        "path", help="the CSV file (a table) or the folder (digits_images) to write"
    )
    args = parser.parse_args()
    if args.name == "digits_images":
        print(write_digits_images(args.path))  # noqa: T201  (a command-line tool)
    else:
        print(write_example_table(args.name, args.path))  # noqa: T201


if __name__ == "__main__":
    main()
