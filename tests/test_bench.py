"""The benchmark script runs end to end (its figures are read by people, not asserted by tests)."""

import re

import pytest

from tests.helpers import run_cli
from tests.test_data import write_mnist


@pytest.mark.slow
def test_bench_prints_the_comparison(tmp_path):
    data = write_mnist(tmp_path / "data", "MNIST", n_train=6000, n_test=1000)
    result = run_cli(
        [
            "bench/bench_train.py",
            "--data-dir",
            str(data),
            "--repeats",
            "1",
            "--epochs",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(
        r"\[cpu\] epoch time.*raw loop [\d.]+ s \| train.py [\d.]+ s \| ratio [\d.]+x", out
    )
    assert re.search(r"\[cpu\] end-to-end .* median [\d.]+ s wall", out)
    assert "[cuda]" in out
