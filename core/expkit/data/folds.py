"""k-fold cross-validation: which samples of a training set validate in fold `fold` of `folds`.

The one place every datamodule takes its fold from (`InMemoryDataModule.fold_indices`; the table
selects rows with it before fitting its standardisation). Class targets get stratified folds
(each class is spread over the folds as evenly as it can be: a class's count in two folds differs
by at most one), a numeric target plain k-fold; the samples are shuffled with `seed` first, so the
same seed gives the same folds and another seed other folds. scikit-learn's `StratifiedKFold` and
`KFold` do the work (scikit-learn is already installed: it ships the bundled digits).

Folds that cannot be made are refused in one line naming the value and what is allowed: more folds
than samples, or (stratified) more folds than the smallest class has samples.
"""

from collections.abc import Sequence

import numpy as np

from expkit.errors import ConfigError


def check_fold_settings(fold: int | None, folds: int | None) -> None:
    """`folds` an integer >= 2 and `fold` null or one of 0..folds-1 (named by their `cv.` keys)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(
            f"cv.folds={folds!r} is not allowed: k-fold cross-validation needs an integer >= 2 "
            "(or null: no cross-validation)."
        )
    if fold is None:
        return
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(
            f"cv.fold={fold!r} is not allowed with cv.folds={folds}: a fold number from 0 to "
            f"{folds - 1} (or null: every fold, one after the other)."
        )


def fold_indices(
    targets: Sequence | np.ndarray,
    fold: int,
    folds: int,
    seed: int,
    stratified: bool,
    what: str = "the training data",
    class_names: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) of fold `fold` of `folds`, both sorted.

    `targets`: one per sample (class indices or labels when `stratified`, else anything); `what`
    and `class_names` only word the errors.
    """
    from sklearn.model_selection import KFold, StratifiedKFold  # only cross-validation needs it

    check_fold_settings(fold, folds)
    if fold is None:
        raise ConfigError(
            f"data.folds={folds} needs data.fold (0 to {folds - 1}): one fold's split."
        )
    targets = np.asarray(targets)
    n = len(targets)
    if folds > n:
        raise ConfigError(
            f"cv.folds={folds} but {what} has {n} samples; allowed: cv.folds from 2 to {n}."
        )
    if stratified:
        labels, counts = np.unique(targets, return_counts=True)
        smallest = int(counts.argmin())
        if folds > counts[smallest]:
            label = labels[smallest]
            name = label
            if class_names and isinstance(label, np.integer) and 0 <= label < len(class_names):
                name = class_names[int(label)]
            raise ConfigError(
                f"cv.folds={folds} but class {str(name)!r} of {what} has only "
                f"{counts[smallest]} samples: stratified folds need every class in every fold. "
                f"Allowed: cv.folds from 2 to {counts[smallest]}."
            )
        splitter: StratifiedKFold | KFold = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    for k, (train, val) in enumerate(splitter.split(np.zeros((n, 1)), targets)):
        if k == fold:
            return np.sort(train), np.sort(val)
    raise AssertionError("unreachable: fold < folds was checked")
