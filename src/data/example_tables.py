"""Small real tables that ship with scikit-learn: something to train `data=csv` on with no download.

`sklearn:wine` (178 rows, 13 numeric features, 3 classes), `sklearn:iris` (150 rows, 4 features,
3 classes), `sklearn:diabetes` (442 rows, 10 features, a numeric target: regression). A `data.path`
of that form reads the table directly; `python -m src.data.example_tables wine data/wine.csv`
writes it as a CSV file, to try `data.path=<file>` exactly as with your own table.
"""

import argparse
import os
from pathlib import Path

import pandas as pd

from src.utils.errors import ConfigError

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        load_example_table(name).to_csv(f, index=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=TABLES)
    parser.add_argument("path", help="the CSV file to write")
    args = parser.parse_args()
    print(write_example_table(args.name, args.path))  # noqa: T201  (a command-line tool)


if __name__ == "__main__":
    main()
