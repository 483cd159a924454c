"""Fixtures of the template's tests, the library's (`expkit.testing.fixtures`): slow tests
first, one decoded-data cache a session, `make_cfg`, torch threads shared among xdist workers."""

from expkit.testing.fixtures import (
    cache_dir,
    few_torch_threads,
    make_cfg,
    pytest_collection_modifyitems,
)

__all__ = ["cache_dir", "few_torch_threads", "make_cfg", "pytest_collection_modifyitems"]
