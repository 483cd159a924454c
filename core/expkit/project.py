"""Where the project that uses the library lives: its `configs/`, `logs/` and `data/`.

The library is installed apart from the project (a wheel, or `core/` of the template), so it cannot
find the project from its own file. The root is, in order: the folder an entry point named with
`use_project_root` (`src/train.py` names the folder above its `src/`); `$EXPKIT_PROJECT_ROOT`; the
nearest folder at or above the current directory that holds `configs/`; the current directory.
"""

import os
from pathlib import Path

LIBRARY_CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_root: Path | None = None


def use_project_root(root: str | Path) -> None:
    """Fix the project's root for this process (entry points call it before anything else)."""
    global _root
    _root = Path(root).resolve()


def project_root() -> Path:
    if _root is not None:
        return _root
    if os.environ.get("EXPKIT_PROJECT_ROOT"):
        return Path(os.environ["EXPKIT_PROJECT_ROOT"]).resolve()
    here = Path.cwd().resolve()
    return next((d for d in (here, *here.parents) if (d / "configs").is_dir()), here)


def project_config_dir() -> Path:
    """The project's own configs (train.yaml and the groups it chooses)."""
    return project_root() / "configs"
