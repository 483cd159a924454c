"""Export a checkpoint's network: `python src/export.py ckpt_path=PATH` needs nothing else.

Writes into the run directory `net.pt` (the plain network's `state_dict`, usable with nothing but
torch and the network class), `net.yaml` (that class and its arguments), `model.ts` (TorchScript)
and `model.onnx`, each checked against the PyTorch network on a real batch (`export.atol`).

An entry point rather than a train option: it works on any checkpoint, from any run (or a
resumed one), at any time, and keeps onnx out of every training run; the end-of-training summary
prints this command with the best checkpoint filled in.
"""

from src.run.completion import answer_shell_completion

answer_shell_completion(
    __name__, "export"
)  # `-sc …`: answered before the imports below load Lightning


from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import src.utils  # noqa: F401  (registers the config resolvers)
from src.checkpoints.restore import restore_run
from src.models.exporters import FILES, check_export_config, export_net
from src.run.cli import run_entry_point
from src.run.lifecycle import open_run
from src.run.summary import show_path
from src.sweeps.job import run_job
from src.utils.atomic import atomic_write_text


def export(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float | str]:
    """Rebuild the checkpoint's model, export and check its network; return each max abs diff."""
    with open_run("export", cfg, model_path=str(cfg.ckpt_path)) as record:
        formats = check_export_config(cfg.export)
        cfg, datamodule, model = restore_run(cfg, overrides)
        out = Path(cfg.paths.output_dir)
        atomic_write_text(out / "net.yaml", OmegaConf.to_yaml(cfg.model.net, resolve=True))
        diffs = export_net(
            model.get_submodule("net"),
            datamodule,
            out,
            formats,
            atol=cfg.export.atol,
            batch_size=cfg.export.batch_size,
            opset=cfg.export.get("onnx_opset"),
        )
        record.add_metrics({f"export/{fmt}_max_abs_diff": diff for fmt, diff in diffs.items()})
        files = ["net.pt", "net.yaml", *(FILES[fmt] for fmt in diffs)]
        record.extra["files"] = [str(out / name) for name in files]
        record.summary_rows = [
            *((name, show_path(out / name)) for name in files),
            *(
                (f"{fmt} check", f"max abs diff {diff:.3g} < {cfg.export.atol:g}")
                for fmt, diff in diffs.items()
            ),
            ("network class", str(cfg.model.net._target_)),
        ]
    return record.metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_job(export, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "export")
