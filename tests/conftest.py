import os
import subprocess

import pytest
import torch

from tests.helpers import compose_config


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One decoded-tensor cache for the session: hermetic, and each dataset is decoded once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path, cache_dir):
    """make_cfg('train', [...overrides]) → a composed config writing into a fresh run directory."""
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
