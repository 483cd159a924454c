"""Fixtures of the template's tests. Nothing heavy is imported at module level: with `-n` the
xdist controller process loads this file too and never runs a test, so torch is imported where a
fixture first needs it, in the workers."""

import atexit
import os
import sys

import pytest


def _end_worker_without_teardown() -> None:
    """An xdist worker has reported everything by the time `atexit` runs; what remains is the
    interpreter's teardown, which with torch loaded takes seconds (`core/expkit/run/exit.py` says
    why). Registered first, so it runs last."""
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


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on 2-core CI machines: with `-n N`, each of the N workers gets its share."""
    import torch

    previous = torch.get_num_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(previous, 2, (os.cpu_count() or 1) // workers)))
    yield
    torch.set_num_threads(previous)
