"""Test a checkpoint: `python src/eval.py ckpt_path=PATH` needs nothing else.

The checkpoint carries its run's resolved config, so the same model and data values are rebuilt
(trainer, callbacks, loggers and paths are this clone's); overrides typed here
(`data.batch_size=256`, `trainer=gpu`) apply on top.
"""

from omegaconf import DictConfig

import expkit.utils  # noqa: F401  (registers the config resolvers)
from expkit.run.build import build_trainer
from expkit.run.lifecycle import open_run
from expkit.run.restore import restore_run
from expkit.run.summary import format_metrics
from expkit.utils.metric_names import stage_of


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float | str]:
    """Rebuild the checkpoint's run, test it, write `results.json`; return the test metrics."""
    with open_run("eval", cfg, model_path=str(cfg.ckpt_path)) as record:
        cfg, datamodule, model = restore_run(cfg, overrides)  # the checkpoint's weights, loaded
        # verbose=False: the run's summary shows the test metrics
        results = build_trainer(cfg).test(model, datamodule=datamodule, verbose=False)
        record.add_metrics(results[0] if results else {})
        tested = {k: v for k, v in record.metrics.items() if stage_of(k) == "test"}  # test_loss too
        record.summary_rows = [("test", format_metrics(tested))]
    return record.metrics
