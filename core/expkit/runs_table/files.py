"""Reading the files a run left, defensively: regular files only, a size cap, YAML without anchors."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 5_000_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ANCHOR = re.compile(r"(?:^|[\s:\[{,-])[&*][^\s,\]}]", re.M)


class Unreadable(Exception):
    """A file of the run exists but cannot be used (the message says why)."""


def _read_text(path: Path) -> str:
    # O_NONBLOCK + a regular-file check: a FIFO or device named results.json must not hang the table
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise Unreadable(f"larger than {MAX_BYTES // 1_000_000} MB")
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        raise Unreadable(f"not UTF-8 text ({err.reason} at byte {err.start})") from None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = _read_text(path)
    except IsADirectoryError:
        raise Unreadable("a directory, not a file") from None
    except PermissionError:
        raise Unreadable("permission denied") from None
    if not text.strip():
        raise Unreadable("empty (written only partly?)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise Unreadable(f"not valid JSON ({str(err)[:120]}); written only partly?") from None
    if not isinstance(data, dict):
        raise Unreadable(f"a JSON {type(data).__name__}, not an object")
    return data


def _load_yaml(path: Path, text: str | None = None) -> Any:
    if text is None:
        try:
            text = _read_text(path)
        except (IsADirectoryError, PermissionError) as err:
            raise Unreadable(type(err).__name__) from None
    if ("&" in text or "*" in text) and _ANCHOR.search(text):
        raise Unreadable("YAML anchors/aliases (never written by Hydra) are not read")
    try:
        return yaml.load(text, Loader=_LOADER)
    except (yaml.YAMLError, RecursionError) as err:
        raise Unreadable(f"not valid YAML ({str(err).splitlines()[0][:120]})") from None


def _yaml_text(path: Path) -> str | None:
    """The text of a YAML file, or None when absent, too large, not text or with anchors."""
    try:
        text = _read_text(path)
    except (OSError, Unreadable):
        return None
    if ("&" in text or "*" in text) and _ANCHOR.search(text):
        return None
    return text
