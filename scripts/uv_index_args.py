"""Print pip's package-index settings as uv arguments (used by the Makefile).

uv does not read pip's configuration (pip.conf, PIP_* variables): where pip is pointed at a mirror
or a folder of wheels (a cluster without internet, a machine with torch wheels on disk), uv must be
told the same, or it resolves against PyPI alone. This prints `--index-url`, `--extra-index-url`
and `--find-links` for what pip has configured, nothing where pip uses PyPI alone. With extra
indexes it adds `--index-strategy unsafe-best-match`: pip picks the best version across all its
indexes, while uv by default stops at the first index that has a package at all.

Run with the Python whose pip should be asked: `.venv/bin/python scripts/uv_index_args.py`.
"""

import shlex
import subprocess
import sys

#: pip option -> uv option (the same meaning)
OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
}


def pip_settings() -> dict[str, list[str]]:
    """pip's values of `OPTIONS`, later sources first overridden (env beats the files)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found: dict[str, list[str]] = {}
    for line in listed.splitlines():  # e.g. global.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in OPTIONS and value:
            found[option] = shlex.split(value.strip("'\"").replace("\\n", " "))
    return found


def uv_args(settings: dict[str, list[str]]) -> list[str]:
    args = [
        arg for option, values in settings.items() for v in values for arg in (OPTIONS[option], v)
    ]
    if settings.get("extra-index-url") or settings.get("find-links"):
        args += ["--index-strategy", "unsafe-best-match"]
    return args


if __name__ == "__main__":
    print(shlex.join(uv_args(pip_settings())))
