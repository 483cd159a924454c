"""Fixtures of the template's tests: the library's (`expkit.testing.fixtures`: one decoded-data
cache a session, `make_cfg`, torch threads shared among xdist workers)."""

from expkit.testing.fixtures import cache_dir, few_torch_threads, make_cfg

__all__ = ["cache_dir", "few_torch_threads", "make_cfg"]
