"""GPU paths (one GPU, mixed precision, device-resident data). Skipped cleanly on machines without CUDA."""

import pytest
import torch

from src.train import train
from tests.helpers import FAST

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

    from src.run.build import build_trainer

    cfg = make_cfg("train", [*FAST, "trainer=gpu"])
    trainer = build_trainer(cfg)
    dm = instantiate(cfg.data, _convert_="all")
    dm.trainer = trainer
    dm.setup("fit")
    assert dm.splits["train"][0].device.type == "cuda"
