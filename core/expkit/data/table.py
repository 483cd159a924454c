"""`data=csv`: train on a table (a CSV file, or a bundled scikit-learn table) with no code.

Every column but `target` is a feature. A column is numeric unless it is listed in `categorical`
or (with `categorical: null`) most of its values are not numbers; a numeric column holding a value
that is not a number is an error that names the line and the value, never a silent NaN.

Categorical columns are one-hot encoded, not embedded: tables here have a handful of categories per
column, one-hot feeds any network (the MLP works unchanged, and `export.py` exports a plain
network), while embeddings would need a network that knows which inputs are which column and pay
off only for columns with hundreds of categories. A category seen only outside the training split
encodes as all zeros.

Splits are carved by `split_seed` (test, then val, from a fixed permutation). Everything fitted
(category lists, the numeric columns' mean and std, the regression target's mean and std, class
names) comes from the training split only and is this datamodule's `state_dict`, which Lightning
stores in every checkpoint: eval and predict then apply exactly the standardisation the run
trained with, even when the file changed since. Standardisation runs per batch on the device, like
the images' normalization.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from expkit.data.examples import is_example, load_example_table
from expkit.data.in_memory import InMemoryDataModule, Split
from expkit.errors import ConfigError, DatasetNotFoundError
from expkit.utils.logging_utils import get_logger
from expkit.utils.shown_path import shown_path

log = get_logger(__name__)

TASKS = ("classification", "regression")


class TableDataModule(InMemoryDataModule):
    """Rows of a table as float32 feature vectors (N×F) and targets (class index, or a float)."""

    name = "csv"

    def __init__(
        self,
        path: str,
        target: str,
        num_classes: int,
        input_shape: Sequence[int],
        task: str = "classification",
        categorical: Sequence[str] | None = None,
        test_size: float | int = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, **kwargs)
        if task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not allowed; allowed: {', '.join(TASKS)}.")
        self.path, self.target, self.task = str(path), target, task
        self.stratified_folds = task == "classification"  # a numeric target: plain k-fold
        self.categorical = None if categorical is None else list(categorical)
        self.fitted: dict | None = None  # set by setup (from the training split) or a checkpoint
        self.target_stats: tuple[float, float] | None = None  # regression: (mean, std) of train

    # ---- reading and encoding -----------------------------------------------------------------
    def _read(self) -> pd.DataFrame:
        if is_example(self.path):
            return load_example_table(self.path)
        file = Path(self.path)
        if not file.is_file():
            raise DatasetNotFoundError(
                f"data.path={self.path!r}: no such file (looked in {shown_path(file)}); give a CSV "
                "file, or a bundled table: sklearn:wine, sklearn:iris, sklearn:diabetes."
            )
        try:  # every cell as text: numbers are parsed below, where a bad one can be named
            frame = pd.read_csv(file, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
            raise ConfigError(
                f"data.path={self.path!r} is not a readable CSV file: {err}"
            ) from None
        if self.target not in frame.columns:
            raise ConfigError(
                f"data.target={self.target!r} is not a column of {self.path}; its columns: "
                f"{', '.join(map(str, frame.columns))}."
            )
        if len(frame.columns) < 2 or len(frame) < 3:
            raise ConfigError(
                f"data.path={self.path!r} has {len(frame)} rows and {len(frame.columns)} columns; "
                "at least 3 rows and a feature column besides the target are needed."
            )
        return frame

    def _numbers(self, column: pd.Series, name: str) -> np.ndarray:
        """A column as float64; a cell that is not a number is an error naming its line and value."""
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            line = int(column.index[first]) + 2  # the file's line: header first, rows from 0
            raise ConfigError(
                f"{self.path}: column {name!r} is numeric but line {line} holds "
                f"{column.iloc[first]!r}; fix the value, or list the column in data.categorical."
            )
        return values.to_numpy(dtype=np.float64)

    def _kinds(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        """(numeric, categorical) feature columns, in file order."""
        features = [c for c in frame.columns if c != self.target]
        if self.categorical is not None:
            unknown = [c for c in self.categorical if c not in features]
            if unknown:
                raise ConfigError(
                    f"data.categorical={self.categorical} names {unknown}, not feature columns of "
                    f"{self.path}; its feature columns: {', '.join(map(str, features))}."
                )
            categorical = list(self.categorical)
        else:  # a column most of whose values are not numbers is categorical
            categorical = [
                c
                for c in features
                if not pd.api.types.is_numeric_dtype(frame[c])
                and pd.to_numeric(frame[c], errors="coerce").notna().mean() < 0.5
            ]
        return [c for c in features if c not in categorical], categorical

    def _fit(self, train: pd.DataFrame, everything: pd.DataFrame) -> dict:
        """What is learned from data: from the training rows only (class names: from every row,
        since a class seen only in val/test still needs an output)."""
        numeric, categorical = self._kinds(everything)
        values = np.stack([self._numbers(train[c], c) for c in numeric], 1) if numeric else None
        mean = values.mean(0) if values is not None else np.zeros(0)
        std = values.std(0) if values is not None else np.ones(0)
        fitted = {
            "numeric": numeric,
            "categories": {c: sorted(set(train[c].astype(str))) for c in categorical},
            "mean": mean.tolist(),
            "std": np.where(std > 0, std, 1.0).tolist(),
        }
        if self.task == "classification":
            fitted["class_names"] = _sorted_labels(everything[self.target].astype(str))
        else:
            y = self._numbers(train[self.target], self.target)
            fitted["target_stats"] = [float(y.mean()), float(y.std()) or 1.0]
        return fitted

    def _encode(self, frame: pd.DataFrame, fitted: dict) -> Split:
        parts = [self._numbers(frame[c], c)[:, None] for c in fitted["numeric"]]
        for column, categories in fitted["categories"].items():
            index = {c: i for i, c in enumerate(categories)}
            codes = frame[column].astype(str).map(index).fillna(-1).to_numpy(dtype=np.int64)
            parts.append((codes[:, None] == np.arange(len(categories))[None]).astype(np.float64))
        x = torch.tensor(np.concatenate(parts, 1) if parts else np.zeros((len(frame), 0)))
        if self.task == "classification":
            index = {c: i for i, c in enumerate(fitted["class_names"])}
            y = torch.tensor(frame[self.target].astype(str).map(index).to_numpy(np.int64))
        else:
            y = torch.tensor(self._numbers(frame[self.target], self.target), dtype=torch.float32)
        return x.to(torch.float32), y

    def load_splits(self) -> dict[str, Split]:
        frame = self._read()
        order = torch.randperm(
            len(frame), generator=torch.Generator().manual_seed(self.hparams.split_seed)
        ).numpy()
        n_test = _count(self.hparams.test_size, len(frame), "data.test_size")
        if self.hparams.folds:  # cross-validation: val is a fold of every non-test row
            pool = frame.iloc[order[n_test:]]
            train, val = self.fold_indices(pool[self.target].astype(str).to_numpy())
            parts = {
                "test": frame.iloc[order[:n_test]],
                "val": pool.iloc[val.numpy()],
                "train": pool.iloc[train.numpy()],
            }
        else:
            parts = self._carve(frame, order, n_test)
        if self.fitted is None:  # a checkpoint's state wins over refitting
            self._use_fitted(self._fit(parts["train"], frame))
        return {k: self._encode(v, self.fitted) for k, v in parts.items()}

    def _carve(
        self, frame: pd.DataFrame, order: np.ndarray, n_test: int
    ) -> dict[str, pd.DataFrame]:
        """Test, then val, then train rows from the fixed permutation `order`."""
        n_val = _count(self.hparams.val_size, len(frame), "data.val_size")
        if n_test + n_val >= len(frame):
            raise ConfigError(
                f"data.test_size={self.hparams.test_size!r} and data.val_size="
                f"{self.hparams.val_size!r} leave no training rows out of {len(frame)}."
            )
        return {
            "test": frame.iloc[order[:n_test]],
            "val": frame.iloc[order[n_test : n_test + n_val]],
            "train": frame.iloc[order[n_test + n_val :]],
        }

    def _with_fold(self, splits: dict[str, Split]) -> dict[str, Split]:
        return splits  # load_splits chose the fold: the fitting must see its training rows only

    # ---- the fitted state: applied per batch, stored in checkpoints ---------------------------
    def _use_fitted(self, fitted: dict) -> None:
        self.fitted = fitted
        self._stats = {}
        if "class_names" in fitted:
            self.class_names = list(fitted["class_names"])
        if "target_stats" in fitted:
            self.target_stats = tuple(fitted["target_stats"])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fitted": self.fitted} if self.fitted else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """The run's own encoding and standardisation (a checkpoint's): re-encode with it."""
        if not state_dict.get("fitted"):
            return
        super().load_state_dict(state_dict)
        self._use_fitted(state_dict["fitted"])
        if self.splits:  # setup ran first (Lightning restores checkpoints after setup)
            self.splits = {}
            self.setup()

    def normalize(self, x: Tensor) -> Tensor:
        """Standardize the numeric features with the training split's mean and std (one-hot
        columns pass unchanged)."""
        if x.device not in self._stats:
            fitted = self.fitted or {}
            n_onehot = x.shape[1] - len(fitted.get("mean", []))
            mean = torch.tensor([*fitted.get("mean", []), *[0.0] * n_onehot], device=x.device)
            std = torch.tensor([*fitted.get("std", []), *[1.0] * n_onehot], device=x.device)
            self._stats[x.device] = (mean.float(), (1.0 / std).float())
        mean, inv_std = self._stats[x.device]
        return x.to(torch.float32, copy=True).sub_(mean).mul_(inv_std)

    def augment_batch(self, x: Tensor) -> Tensor:
        return x  # no augmentation for tables

    def _cache_path(self) -> None:
        return None  # parsing a table is fast; the encoding depends on the fitted state

    def _check_shapes(self, split: str, x: Tensor, y: Tensor) -> None:
        fitted = self.fitted
        width = x.shape[1]
        if list(self.input_shape) != [width]:
            onehot = ", ".join(f"{c} ({len(v)})" for c, v in fitted["categories"].items())
            raise ConfigError(
                f"data.input_shape={list(self.input_shape)} but {self.path} gives {width} features "
                f"({len(fitted['numeric'])} numeric"
                f"{f', one-hot of {onehot}' if onehot else ''}); set data.input_shape=[{width}]."
            )
        if self.task == "classification" and len(fitted["class_names"]) != self.num_classes:
            names = fitted["class_names"]
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise ConfigError(
                f"data.num_classes={self.num_classes} but column {self.target!r} of {self.path} "
                f"holds {len(names)} classes ({shown}); set data.num_classes={len(names)}, or "
                "data.task=regression for a numeric target."
            )
        if self.task == "regression" and self.num_classes != 1:
            raise ConfigError(
                f"data.num_classes={self.num_classes} with data.task=regression: one target, "
                "set data.num_classes=1."
            )


def _count(size: float | int, n: int, key: str) -> int:
    count = int(round(size * n)) if isinstance(size, float) else int(size)
    if not 0 < count < n:
        raise ConfigError(
            f"{key}={size!r} gives {count} of {n} rows; allowed: a fraction in (0, 1) or a count "
            f"in [1, {n - 1}]."
        )
    return count


def _sorted_labels(values: pd.Series) -> list[str]:
    """Distinct target values, numerically sorted when they are all numbers ("2" before "10")."""
    labels = sorted(set(values))
    numbers = pd.to_numeric(pd.Series(labels), errors="coerce")
    if numbers.notna().all():
        labels = [label for _, label in sorted(zip(numbers, labels, strict=True))]
    return labels
