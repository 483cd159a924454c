"""Opening a study's storage (`hydra.sweeper.storage`), and the study in it.

A database written by an older Optuna (the template's earlier stack was optuna 2.10) opens only
after Optuna's own schema upgrade, `optuna storage upgrade --storage URL`. Optuna raises a
RuntimeError with a paragraph; the user gets one line naming the storage and the command. The
upgrade is left to the user: it is one-way (the older Optuna cannot open the file afterwards).
"""

import re
from typing import Any

import optuna
from hydra.errors import CompactHydraException


class StorageUpgradeNeeded(CompactHydraException):
    """The study database's schema is older than this Optuna reads (one line, no traceback)."""


def open_storage(storage: Any) -> Any:
    """`storage` as an Optuna storage object (`None`: in memory; a URL: an `RDBStorage`); a
    database of an older schema is refused with one line saying how to upgrade it."""
    if storage is None:
        return optuna.storages.InMemoryStorage()
    if not isinstance(storage, str):
        return storage
    try:
        return optuna.storages.RDBStorage(storage)
    except RuntimeError as exc:
        if "storage upgrade" not in str(exc):
            raise
        found = re.search(r"set up by optuna ([\w.]+)", str(exc))
        written_by = f"optuna {found.group(1)}" if found else "an older Optuna"
        raise StorageUpgradeNeeded(
            f"hydra.sweeper.storage={storage} was written by {written_by}; optuna "
            f"{optuna.__version__} opens it after Optuna's own upgrade: "
            f"optuna storage upgrade --storage '{storage}' (one-way: copy the file first if "
            f"{written_by} must still read it), then run the same command again."
        ) from None


def load_existing_study(study_name: str | None, storage: Any) -> optuna.Study | None:
    """The study named `study_name` in `storage`, or None when there is no storage or no such
    study yet."""
    if storage is None:
        return None
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except (KeyError, ValueError):  # no study of that name; no name and not exactly one study
        return None
