"""Take the plain network out of its Lightning shell: `net.pt`, TorchScript, ONNX, each checked.

Every export is loaded back and run on a real batch of the run's data; the largest absolute
difference from the PyTorch network's logits is logged and must stay below `atol`, so a file that
computes something else never ships. Tracing uses a batch of 2 and the check a larger one, which
also proves the batch dimension stayed dynamic. onnx, onnxruntime and onnxscript are imported here
only, when an export is asked for.
"""

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from src.utils.atomic import atomic_path
from src.utils.errors import ConfigError, ExportError
from src.utils.logging_utils import get_logger

log = get_logger(__name__)

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def check_export_config(export_cfg) -> list[str]:
    """`export.formats`, `export.atol`, `export.batch_size` checked before any work; the formats."""
    formats = list(export_cfg.formats or [])
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(
            f"export.formats={formats!r}: unknown {unknown}; allowed: any of {list(FORMATS)}."
        )
    atol, batch_size = export_cfg.atol, export_cfg.batch_size
    if isinstance(atol, bool) or not isinstance(atol, int | float) or atol < 0:
        raise ConfigError(f"export.atol={atol!r} is not allowed: it must be a number >= 0.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"export.batch_size={batch_size!r} is not allowed: an integer >= 1.")
    return list(dict.fromkeys(formats))


def real_batches(datamodule, batch_size: int, split: str = "test") -> tuple[Tensor, Tensor]:
    """Two batches of the run's own data as the network sees them (the datamodule's splits are
    normalized at setup): 2 images to trace with, `batch_size` others to check on."""
    datamodule.setup("test")
    images = datamodule.splits[split][0]
    if len(images) < 2 + batch_size:
        batch_size = max(1, len(images) - 2)
    batch = images[: 2 + batch_size].float().cpu()
    return batch[:2], batch[2:]


def save_state_dict(net: nn.Module, path: Path) -> Path:
    """The plain network's weights: `Net(**args).load_state_dict(torch.load(path, weights_only=True))`."""
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return path


def export_torchscript(net: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    """`torch.jit.trace` → `model.ts`; returns the reloaded module as a function of a batch."""
    with (
        warnings.catch_warnings()
    ):  # torch >= 2.10 marks TorchScript deprecated; still widely served
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with atomic_path(path) as tmp:
            torch.jit.save(torch.jit.trace(net, example), str(tmp))
        loaded = torch.jit.load(str(path), map_location="cpu")
    return loaded


def export_onnx(
    net: nn.Module, example: Tensor, path: Path, opset: int | None = None
) -> Callable[[Tensor], Tensor]:
    """torch's dynamo ONNX exporter (batch dimension dynamic) → `model.onnx`, one self-contained
    file; checked by `onnx.checker`; returns an onnxruntime session as a function of a batch."""
    import onnx
    import onnxruntime

    for name in ("onnxscript", "onnx_ir"):  # their optimizer passes log every step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with atomic_path(path) as tmp:
        _onnx_export(net, example, tmp, opset)
    onnx.checker.check_model(onnx.load(str(path)))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])

    return run


@torch.inference_mode()
def max_abs_diff(reference: nn.Module, exported: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """Largest |exported(x) - reference(x)| over every logit of the batch."""
    expected = reference(x)
    actual = exported(x)
    if tuple(actual.shape) != tuple(expected.shape):
        raise ExportError(f"shape {list(actual.shape)} != PyTorch's {list(expected.shape)}")
    return float((actual.float() - expected.float()).abs().max())


def export_net(
    net: nn.Module,
    datamodule,
    output_dir: Path,
    formats: list[str],
    atol: float = 1e-4,
    batch_size: int = 8,
    opset: int | None = None,
) -> dict[str, float]:
    """Write `net.pt` and each format into `output_dir`, check each; return `{format: max abs diff}`."""
    net = net.cpu().eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    save_state_dict(net, output_dir / "net.pt")
    trace_batch, check_batch = real_batches(datamodule, batch_size)
    exporters = {
        "torchscript": lambda path: export_torchscript(net, trace_batch, path),
        "onnx": lambda path: export_onnx(net, trace_batch, path, opset),
    }
    diffs = {}
    for fmt in dict.fromkeys(formats):
        path = output_dir / FILES[fmt]
        diff = max_abs_diff(net, exporters[fmt](path), check_batch)
        log.info(
            "%s: %s, max abs difference from PyTorch on a real batch of %d: %.3g (allowed < %g)",
            fmt,
            path,
            len(check_batch),
            diff,
            atol,
        )
        if not diff < atol:
            raise ExportError(
                f"{fmt} export {path} differs from the PyTorch model by {diff:.3g} on a real batch "
                f"(export.atol={atol}); the file was kept for inspection."
            )
        diffs[fmt] = diff
    return diffs


def _onnx_export(net: nn.Module, example: Tensor, path: Path, opset: int | None) -> None:
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        external_data=False,
        dynamo=True,
        verbose=False,
    )
