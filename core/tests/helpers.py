"""What many of the library's tests need: the library's test helpers (`expkit.testing`) with the
test bed `project/` as the project, and faults on cue.

The tests run against the test bed (conftest.py says why and how), never against the folder this
file is in: `ROOT` is the test bed."""

import os
import subprocess
import sys
from pathlib import Path

from expkit.testing import (
    FAST,
    PLOT,
    compose_config,
    config_options,
    results,
    threads_for_tests,
)
from expkit.testing import run_cli as _run_cli

TESTS = Path(__file__).resolve().parent
ROOT = TESTS / "project"
CONFIG_DIR = ROOT / "configs"
PYTHON = sys.executable
#: what a spawned command needs on its path: the test bed's `src` and these tests' modules (the
#: fault-injection callbacks and test modules that tests name as `_target_`s)
PYTHONPATH = os.pathsep.join([str(TESTS), str(ROOT)])

__all__ = [
    "CONFIG_DIR",
    "FAST",
    "PLOT",
    "PYTHON",
    "PYTHONPATH",
    "ROOT",
    "TESTS",
    "compose_config",
    "config_options",
    "fault",
    "results",
    "run_cli",
    "threads_for_tests",
]


def run_cli(
    args: list[str], cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command line as a user would type it (`python src/train.py ...`) in the test bed,
    these tests' modules on the path (fault injection)."""
    return _run_cli(args, cwd=cwd, timeout=timeout, env=env, path=[TESTS, ROOT])


def fault(kind: str, **params: object) -> list[str]:
    """Overrides adding a fault-injection callback (`core/tests/fault_injection.py`)."""
    overrides = [f"+callbacks.fault._target_=fault_injection.{kind}"]
    return overrides + [f"+callbacks.fault.{k}={v}" for k, v in params.items()]
