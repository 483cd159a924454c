"""GPU paths (one GPU, mixed precision, device-resident data, the GPU pool launcher). Skipped
cleanly on machines without CUDA."""

import json
import time

import pytest
import torch

from helpers import FAST
from src.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_gpu_mixed_precision_with_data_on_the_device(make_cfg):
    cfg = make_cfg("train", [*FAST, "trainer=gpu", "trainer.max_epochs=3"])
    metrics = train(cfg)
    assert metrics["test/acc"] >= 0.9


def test_datamodule_keeps_the_splits_on_the_gpu(make_cfg):
    from hydra.utils import instantiate

    from expkit.run.build import build_trainer

    cfg = make_cfg("train", [*FAST, "trainer=gpu"])
    trainer = build_trainer(cfg)
    dm = instantiate(cfg.data, _convert_="all")
    dm.trainer = trainer
    dm.setup("fit")
    assert dm.splits["train"][0].device.type == "cuda"


@pytest.mark.slow
def test_gpu_pool_runs_each_job_on_a_real_gpu(tmp_path):
    """`hydra/launcher=gpu_pool` on this machine's GPUs, two jobs per GPU: every job trains on
    the GPU the pool gave it (as cuda:0), records its name, and the summary shows it."""
    import pandas as pd

    from test_gpu_pool import GPU_POOL_GPU, check_sweep
    from test_sweeps import only_sweep_dir, run_sweep

    gpus = [str(i) for i in range(torch.cuda.device_count())]
    t0 = time.perf_counter()
    run_sweep(
        [
            "hydra/launcher=gpu_pool",
            "hydra.launcher.jobs_per_gpu=2",
            "trainer=gpu",
            "trainer.max_epochs=3",
            f"seed={','.join(str(s) for s in range(1, 2 * len(gpus) + 2))}",
        ],
        tmp_path,
    )
    wall = time.perf_counter() - t0
    sweep = only_sweep_dir(tmp_path)
    jobs = 2 * len(gpus) + 1
    spans = check_sweep(sweep, jobs=jobs, gpus=gpus, jobs_per_gpu=2)
    names = set()
    for job in range(jobs):
        record = json.loads((sweep / str(job) / "results.json").read_text())
        assert record["status"] == "completed", record.get("error")
        names.add(record[GPU_POOL_GPU]["name"])
    assert None not in names
    table = pd.read_csv(sweep / "summary.csv")
    assert set(table["gpu"].astype(str)) <= set(gpus) and "gpu_name" in table.columns
    busy = sum(end - start for _, start, end, _ in spans.values())
    print(
        f"GPU pool: {jobs} jobs on {len(gpus)} GPU(s) x 2 in {wall:.1f} s wall "
        f"({busy:.1f} s of job time; GPUs: {sorted(names)})"
    )
