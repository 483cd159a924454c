"""The pytest fixtures (and the one collection hook) of a project's tests and the library's. A
conftest.py imports them: `from expkit.testing.fixtures import cache_dir, make_cfg, ...` (an
import, not `pytest_plugins`, which pytest refuses in a conftest below the rootdir in some
invocations).

Nothing heavy is imported at module level: with `-n` the xdist controller process loads this file
too and never runs a test, so torch is imported where a fixture first needs it, in the workers."""

import atexit
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig


def _end_worker_without_teardown() -> None:
    """An xdist worker has reported everything by the time `atexit` runs; what remains is the
    interpreter's teardown, which with torch loaded takes seconds (library destructors, as
    `expkit/run/exit.py` explains for the entry points). Registered when this plugin loads, before
    anything that imports torch, so it runs last."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_end_worker_without_teardown)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first, each group in its collected order: xdist hands tests out in that
    order, so the long ones start early and the suite does not end with one worker running a long
    test while the others wait."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-tensor cache for the session: hermetic, and each dataset is decoded once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """make_cfg('train', [...overrides]) → a composed config writing into a fresh run directory."""
    from expkit.testing import compose_config

    counter = iter(range(1000))

    def _make(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
        return compose_config(name, tmp_path / f"run{next(counter)}", list(overrides), cache_dir)

    return _make


@pytest.fixture(autouse=True)
def few_torch_threads() -> Iterator[None]:
    """Tests run on small CI machines: keep torch from oversubscribing them (with `-n N`, each of
    the N workers gets its share of the cores)."""
    import torch

    from expkit.testing import threads_for_tests

    previous = torch.get_num_threads()
    torch.set_num_threads(threads_for_tests(previous))
    yield
    torch.set_num_threads(previous)
