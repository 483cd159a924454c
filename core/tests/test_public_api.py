"""Every name of the Public API table (core/README.md) exists in the installed library; the wheel
test refuses to run against any other copy of it.

The table is read from the installed distribution's metadata (its long description is the README),
so this runs the same against the editable checkout and against the wheel in a fresh venv."""

import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import expkit
from expkit.run.compose import compose_config
from helpers import TESTS


def _table() -> dict[str, list[str]]:
    """`{what: [names]}` from the rows of the "## Public API" table."""
    readme = importlib.metadata.metadata("expkit")["Description"] or ""
    assert "## Public API" in readme, "the distribution's description is core/README.md"
    section = readme.split("## Public API", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and "`" in cells[1]:
            rows[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return rows


TABLE = _table()
DOTTED = [
    name
    for what, names in TABLE.items()
    if what != "command line"
    for name in names
    if name.startswith("expkit.")
]


def test_the_table_is_read():
    assert len(TABLE) >= 15 and len(DOTTED) >= 40, TABLE


@pytest.mark.parametrize("name", DOTTED)
def test_every_listed_name_imports(name):
    module, _, attribute = name.rpartition(".")
    assert hasattr(importlib.import_module(module), attribute), f"{module} has no {attribute}"


def test_the_listed_commands_are_modules():
    commands = TABLE["command line"]
    modules = [c.split()[2] for c in commands if c.startswith("python -m ")]
    assert modules == ["expkit", "expkit.runs_table", "expkit.sweeps.summary"]
    for module in modules:
        assert importlib.util.find_spec(module if module != "expkit" else "expkit.__main__")


def test_the_listed_config_groups_ship_with_the_library():
    configs = importlib.resources.files("expkit.configs")
    groups = next(v for k, v in TABLE.items() if k.startswith("configs"))
    assert groups and all(configs.joinpath(g).is_dir() for g in groups), groups


@pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema")
def test_the_listed_hydra_plugins_are_found(tmp_path):
    """`hydra/sweeper=resumable_optuna`; `hydra/launcher=joblib`, `submitit_local`, ...: each
    composes (Hydra found the plugin's config in the installed distribution)."""
    listed = next(v for k, v in TABLE.items() if k.startswith("Hydra plugins"))
    choices, group = [], ""
    for name in listed:
        if "=" in name:
            group, name = name.split("=")
        choices.append(f"{group}={name}")
    assert len(choices) == 5, choices
    for choice in choices:
        assert compose_config("train", tmp_path / "run", [choice]) is not None


def test_the_wheel_test_refuses_a_library_from_elsewhere(tmp_path):
    """With EXPKIT_EXPECT_INSTALLED naming a folder this expkit is not in (the wheel test run
    against a checkout), the session stops before collecting anything, naming both places."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}  # a worker's
    env["EXPKIT_EXPECT_INSTALLED"] = str(tmp_path)  # conftest ends its process with exit code 0
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(TESTS / "test_exit.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert f"expkit is imported from {Path(expkit.__file__).resolve()}, not from {tmp_path}" in (
        proc.stdout + proc.stderr
    )
