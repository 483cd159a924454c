"""A path as an error message shows it: resolved when it can be, never a second error.

`Path.resolve()` raises RuntimeError on a symlink loop (and OSError on some broken mounts): called
inside a one-line error's message, it would replace that line with a traceback.
"""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path) -> str:
    """`path` resolved, or `path` and why it cannot be (a symlink loop)."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):  # RuntimeError: Python's word for a symlink loop
        return f"{path} (a symlink loop, or a path through one)"
