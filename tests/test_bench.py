"""The benchmark script runs end to end (its figures are read by people, not asserted by tests)."""

import re

import pytest

from expkit.testing import write_mnist
from tests.helpers import run_cli


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
    for reference in ("Lightning alone", "Lightning defaults"):
        assert re.search(rf"\| {reference} \(.*\) [\d.]+ s \| ratio [\d.]+x", out), reference
        assert re.search(rf"train.py / {reference}, per repeat: [\d.]+ \(median [\d.]+\)", out)
    assert re.search(
        r"hook dispatch for the \d+ default callbacks as a run installs them: -?\d+ us", out
    )
    assert re.search(r"\[cpu\] end-to-end .* median [\d.]+ s wall", out)
    assert "[cuda]" in out


@pytest.mark.slow
def test_memory_bench_prints_every_row(tmp_path):
    data = write_mnist(tmp_path / "data", "MNIST", n_train=6000, n_test=1000)  # val_size 5000
    result = run_cli(["bench/bench_memory.py", "--data-dir", str(data), "--rounds", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("imports", "Lightning alone", "Lightning alone, no teardown", "ours"):
        assert re.search(rf"  {re.escape(row)} +\d+ MB", result.stdout), result.stdout
    assert re.search(r"ours - Lightning alone \(both without teardown\): [+-]\d+ MB", result.stdout)
