"""Export a checkpoint's network: `python src/export.py ckpt_path=PATH` needs nothing else.

Writes into the run directory `net.pt` (the plain network's `state_dict`, usable with nothing but
torch and the network class), `net.yaml` (that class and its arguments), `model.ts` (TorchScript)
and `model.onnx`, each checked against the PyTorch network on a real batch (`export.atol`).

An entry point rather than a train option: it works on any checkpoint, from any run (or a
resumed one), at any time, and keeps onnx out of every training run; the end-of-training summary
prints this command with the best checkpoint filled in.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import src.utils  # noqa: F401  (registers the config resolvers)
from src.utils.cli import run_entry_point
from src.utils.exporters import FILES, check_export_config, export_net
from src.utils.logging_utils import get_logger
from src.utils.restore import restore_run
from src.utils.run_artifacts import record_run
from src.utils.run_summary import log_summary, show_path, summary_lines

log = get_logger(__name__)


def export(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Rebuild the checkpoint's model, export and check its network; return each max abs diff."""
    with record_run("export", cfg.paths.output_dir) as record:
        formats = check_export_config(cfg.export)
        cfg, datamodule, model = restore_run(cfg, overrides)
        out = Path(cfg.paths.output_dir)
        OmegaConf.save(OmegaConf.to_container(cfg.model.net, resolve=True), out / "net.yaml")
        diffs = export_net(
            model.net,
            datamodule,
            out,
            formats,
            atol=cfg.export.atol,
            batch_size=cfg.export.batch_size,
            opset=cfg.export.get("onnx_opset"),
        )
        record.add_metrics({f"export/{fmt}_max_abs_diff": diff for fmt, diff in diffs.items()})
        record.best_model_path = str(cfg.ckpt_path)
        files = ["net.pt", "net.yaml", *(FILES[fmt] for fmt in diffs)]
        record.extra["files"] = [str(out / name) for name in files]
    log_summary(
        summary_lines(
            "Export summary",
            [
                ("checkpoint", show_path(cfg.ckpt_path)),
                *((name, show_path(out / name)) for name in files),
                *(
                    (f"{fmt} check", f"max abs diff {diff:.3g} < {cfg.export.atol:g}")
                    for fmt, diff in diffs.items()
                ),
                ("network class", str(cfg.model.net._target_)),
            ],
        )
    )
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    export(cfg, overrides=list(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    run_entry_point(main, "export")
