"""Find run directories: every directory holding `results.json` or Hydra's `.hydra/overrides.yaml`.

A single run (`logs/train/runs/<run>/`), a job of a grid sweep (`logs/train/multiruns/<sweep>/<n>/`)
and an Optuna trial (`logs/train/optuna/<study>/<n>/`) all look the same. A run directory is not
searched further, and neither are directories that never hold runs (checkpoints, logger output,
MLflow's store, hidden ones): with thousands of runs, the walk costs one `scandir` per directory.
Symbolic links to directories are not followed (no loops); unreadable directories are skipped.
"""

import os
from collections.abc import Iterable
from pathlib import Path

RESULTS_FILE = "results.json"
HYDRA_DIR = ".hydra"
#: directories that hold what runs write, never other runs
NOT_RUNS = {"checkpoints", "tensorboard", "csv", "wandb", "mlflow", "provenance", "__pycache__"}
MAX_DEPTH = 10


def is_run_dir(names: Iterable[str]) -> bool:
    """Whether a directory with these entries is a run directory."""
    names = set(names)
    return RESULTS_FILE in names or HYDRA_DIR in names


def find_run_dirs(roots: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """(every run directory under `roots`, sorted; a note for each directory that could not be read).

    A root may itself be a run directory, a sweep directory or any folder above them.
    """
    found: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            problems.append(f"{root}: not a directory")
            continue
        _walk(root, 0, found, problems, seen)
    return sorted(found), problems


def _walk(
    directory: Path, depth: int, found: list[Path], problems: list[str], seen: set[Path]
) -> None:
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as err:
        problems.append(f"{directory}: {err.strerror or err}")
        return
    if is_run_dir(e.name for e in entries):
        key = directory.resolve()
        if key not in seen:  # the same run reached from two roots is listed once
            seen.add(key)
            found.append(directory)
        return
    if depth >= MAX_DEPTH:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name in NOT_RUNS:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        _walk(Path(entry.path), depth + 1, found, problems, seen)
