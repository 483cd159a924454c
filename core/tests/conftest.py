"""The library's own tests, and the project they run against.

The library cannot be tested without a project around it (configs choosing models and data, entry
points to type): `project/` here is that test bed. In this repository its `configs`, `src`,
`scripts`, `bench` and `docs/examples` are symlinks to the template's own (`../../../configs`,
`../../../src`, ...), so the bed never drifts from what a user clones; the wheel test
(`make test-library`) copies this folder with the links dereferenced (`cp -rL`) and runs it with
the library installed from its wheel in a fresh venv, no checkout on the path.

Tests find the bed through `expkit.project` (env `EXPKIT_PROJECT_ROOT`, set for every module here)
and spawn `python src/train.py ...` with their working directory in it (`helpers.run_cli`). The
bed's `src` is on `sys.path` (at the end: a checkout's own `src` comes first, the same files); the
support modules here (helpers, fault_injection, ...) are imported by their plain names, as pytest
puts this folder on the path (there is no `__init__.py`: the template's `tests` package and this
folder do not collide in one `pytest tests core/tests` run).

With `EXPKIT_EXPECT_INSTALLED=<site-packages>` (the wheel test) the session refuses to start
unless `expkit` is imported from that folder.

Nothing heavy is imported at module level: with `-n` the xdist controller process loads this file
too and never runs a test, so torch is imported where a fixture first needs it, in the workers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# the fixtures a project's tests have too: one decoded-data cache a session, `make_cfg`, torch
# threads shared among xdist workers (and a worker's exit without the interpreter's teardown)
from expkit.testing.fixtures import (
    cache_dir,
    few_torch_threads,
    make_cfg,
    pytest_collection_modifyitems,
)

__all__ = ["cache_dir", "few_torch_threads", "make_cfg", "pytest_collection_modifyitems"]

#: the test bed (`helpers.ROOT`; not imported from there: helpers loads Hydra)
ROOT = Path(__file__).resolve().parent / "project"
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def pytest_configure(config: pytest.Config) -> None:
    """The wheel test's check: the library under test is the installed one."""
    expected = os.environ.get("EXPKIT_EXPECT_INSTALLED")
    if expected:
        import expkit

        where = Path(expkit.__file__).resolve()
        if not where.is_relative_to(Path(expected).resolve()):
            raise pytest.UsageError(f"expkit is imported from {where}, not from {expected}")


def pytest_report_header() -> str:
    import expkit

    return f"expkit {expkit.__version__} from {Path(expkit.__file__).parent}; project {ROOT}"


@pytest.fixture(scope="module", autouse=True)
def _test_bed():
    """Every module of the library's tests runs against the test bed (restored afterwards: the
    template's tests may share this process)."""
    previous = os.environ.get("EXPKIT_PROJECT_ROOT")
    os.environ["EXPKIT_PROJECT_ROOT"] = str(ROOT)
    yield ROOT
    if previous is None:
        os.environ.pop("EXPKIT_PROJECT_ROOT", None)
    else:
        os.environ["EXPKIT_PROJECT_ROOT"] = previous


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs for the full-disk tests (root can mount one); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
