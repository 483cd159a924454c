"""Fixtures every test module may use. Nothing heavy is imported at module level: with
`make test-fast` the xdist controller process loads this file too and never runs a test, so torch
(~2 s to import, ~1 s to tear down) is imported where a fixture first needs it, in the workers."""

import atexit
import os
import subprocess
import sys

import pytest


def _end_worker_without_teardown() -> None:
    """An xdist worker has reported everything by the time `atexit` runs; what remains is the
    interpreter's teardown, which with torch loaded takes ~1-3 s a worker (library destructors,
    as `core/expkit/run/exit.py` explains for our entry points). Registered first, so it runs last: every
    handler registered after this one (loggers, multiprocessing) has run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_end_worker_without_teardown)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One decoded-tensor cache for the session: hermetic, and each dataset is decoded once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path, cache_dir):
    """make_cfg('train', [...overrides]) → a composed config writing into a fresh run directory."""
    from tests.helpers import compose_config

    counter = iter(range(1000))

    def _make(name: str = "train", overrides: list[str] = ()):
        return compose_config(name, tmp_path / f"run{next(counter)}", list(overrides), cache_dir)

    return _make


def threads_for_tests(previous: int) -> int:
    """Torch threads for a test (and for module fixtures whose runs tests compare against)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(previous, 2, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on 2-core CI machines: keep torch from oversubscribing them (with `-n N`, each of
    the N workers gets its share of the cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads_for_tests(previous))
    yield
    torch.set_num_threads(previous)


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
