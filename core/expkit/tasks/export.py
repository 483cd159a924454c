"""Export a checkpoint's model: `python src/export.py ckpt_path=PATH` needs nothing else.

Any LightningModule: exported through its own `to_torchscript` and `to_onnx` (its `forward`),
with an example input from the module (`example_input_array`) or from the datamodule, names from
the module (`input_names`, `output_names`), each export checked against the module's `forward`
(`export.atol`; `core/expkit/models/exporters.py`). Writes into the run directory `model.ts`
(TorchScript) and `model.onnx`, and, for a module with a `net` submodule, `net.pt` (the plain
network's `state_dict`, usable with nothing but torch and the network class) and `net.yaml`
(that class and its arguments, when the model config names them). A format the module's
`forward` cannot be exported to is one warning line; the others are kept.

An entry point rather than a train option: it works on any checkpoint, from any run (or a
resumed one), at any time, and keeps onnx out of every training run; the end-of-training summary
prints this command with the best checkpoint filled in.
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

import expkit.utils  # noqa: F401  (registers the config resolvers)
from expkit.errors import ConfigError, ExportError
from expkit.models.exporters import FILES, check_export_config, export_model, save_state_dict
from expkit.run.lifecycle import open_run
from expkit.run.restore import restore_run
from expkit.run.summary import show_path
from expkit.utils.atomic import atomic_write_text


def export_net(model: nn.Module, cfg: DictConfig, out: Path) -> list[str]:
    """`net.pt` (and `net.yaml` when `model.net` is a config) for a module with a `net`; the names."""
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Module):
        return []
    save_state_dict(net.cpu(), out / "net.pt")
    net_cfg = OmegaConf.select(cfg, "model.net")
    if not OmegaConf.is_dict(net_cfg) or "_target_" not in net_cfg:
        return ["net.pt"]
    atomic_write_text(out / "net.yaml", OmegaConf.to_yaml(net_cfg, resolve=True))
    return ["net.pt", "net.yaml"]


def export(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float | str]:
    """Rebuild the checkpoint's model, export and check it; return each format's max abs diff."""
    with open_run("export", cfg, model_path=str(cfg.ckpt_path)) as record:
        formats = check_export_config(cfg.export)
        cfg, datamodule, model = restore_run(cfg, overrides)
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = export_net(model, cfg, out)
        if not files and not formats:
            raise ConfigError(
                f"export.formats=[] and {type(model).__name__} has no `net` submodule: nothing "
                f"to export. Allowed: export.formats with any of {list(FILES)}."
            )
        diffs, failed = export_model(
            model,
            datamodule,
            out,
            formats,
            atol=cfg.export.atol,
            batch_size=cfg.export.batch_size,
            opset=cfg.export.get("onnx_opset"),
        )
        record.add_metrics({f"export/{fmt}_max_abs_diff": diff for fmt, diff in diffs.items()})
        files += [FILES[fmt] for fmt in diffs]
        record.extra["files"] = [str(out / name) for name in files]
        record.extra["failed_formats"] = failed
        if failed and not files:
            raise ExportError(
                "nothing exported: " + "; ".join(f"{fmt}: {why}" for fmt, why in failed.items())
            )
        record.summary_rows = [
            *((name, show_path(out / name)) for name in files),
            *(
                (f"{fmt} check", f"max abs diff {diff:.3g} < {cfg.export.atol:g}")
                for fmt, diff in diffs.items()
            ),
            *((f"{fmt} failed", why) for fmt, why in failed.items()),
            ("module", type(model).__name__),
        ]
    return record.metrics
