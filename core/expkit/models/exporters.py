"""Export a LightningModule through its own `to_torchscript` and `to_onnx`, each export checked.

Any module: what is exported is the module's `forward` (our Classifier's is its network's logits,
an autoencoder's its code). The example input comes from the module (`example_input_array`, a
tensor or a tuple of tensors), else from the datamodule (the input of its predict, else test,
batches, as its batch hooks hand them to the module). Names come from the module where it
declares them (`input_names`, `output_names`), else `input` and `output` (`input_0…`,
`output_0…` for several, a dict's keys for a `forward` that returns a dict).

Every export is loaded back and run on a batch of another size (real data where the example
came from the datamodule); the largest absolute difference from the module's own `forward` must
stay below `atol`, or the run fails: a file that computes something else never ships. A module
whose `forward` cannot be traced or exported to ONNX gets one warning line per format that
failed; the formats that succeeded are kept. Every file is serialized in memory and written
atomically (a full disk ends in one line naming the file; `torch.jit.save` to a path would
abort the process). onnx, onnxruntime and onnxscript are imported here only, when asked for.
"""

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from expkit.data.loaders import input_samples
from expkit.errors import ConfigError, ExportError
from expkit.utils.atomic import atomic_write_bytes
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}

Inputs = tuple[Tensor, ...]


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


# ---- example inputs -----------------------------------------------------------------------------
def example_inputs(
    model: pl.LightningModule, datamodule, batch_size: int
) -> tuple[Inputs, Inputs, str]:
    """`(inputs to trace with (batch 2), inputs to check on (another batch size), where from)`."""
    declared = model.example_input_array
    if declared is not None:
        example = _as_inputs(declared, type(model).__name__)
        trace = tuple(_rows(x, 2) for x in example)
        generator = torch.Generator().manual_seed(0)
        check = tuple(_like(x, batch_size + 2, generator) for x in example)
        return trace, check, f"{type(model).__name__}.example_input_array"
    split, samples = input_samples(datamodule, 2 + batch_size)
    if len(samples) < 3:
        raise ConfigError(
            f"export: {type(datamodule).__name__}'s {split} data has {len(samples)} sample(s); "
            "at least 3 are needed (2 to trace with, others to check on), or declare the module's "
            "example_input_array."
        )
    return (samples[:2],), (samples[2:],), f"{len(samples) - 2} real {split} samples"


def _as_inputs(value: Any, owner: str) -> Inputs:
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tensor) for v in value):
        return tuple(value)
    raise ConfigError(
        f"{owner}.example_input_array is a {type(value).__name__}; export takes a tensor or a "
        "tuple of tensors (one per forward argument)."
    )


def _rows(x: Tensor, n: int) -> Tensor:
    """`x` with exactly `n` rows (repeated when shorter): the tracer needs a batch > 1 to keep the
    batch dimension dynamic."""
    repeats = -(-n // max(len(x), 1))
    return x.repeat(repeats, *([1] * (x.dim() - 1)))[:n] if len(x) else x


def _like(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """A batch of `n` samples shaped and typed like `x` (random: the check compares both sides)."""
    shape = (n, *x.shape[1:])
    if x.is_floating_point():
        return torch.randn(shape, generator=generator).to(x.dtype)
    high = int(x.max()) + 1 if x.numel() else 2
    return torch.randint(0, max(high, 2), shape, generator=generator).to(x.dtype)


# ---- names and outputs --------------------------------------------------------------------------
def flat_outputs(value: Any) -> list[Tensor]:
    """A tensor, or every tensor of a tuple/list/dict (in order), as a list."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flat_outputs(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in flat_outputs(v)]
    return []  # None and other non-tensors: nothing an exported graph returns


def io_names(model: nn.Module, inputs: Inputs, reference: Any) -> tuple[list[str], list[str]]:
    """The module's `input_names`/`output_names` when it declares them, else the defaults."""
    outputs = flat_outputs(reference)
    default_in = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
    if isinstance(reference, dict) and len(reference) == len(outputs):
        default_out = [str(k) for k in reference]
    else:
        default_out = (
            ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
        )
    return (
        _declared(model, "input_names", len(inputs)) or default_in,
        _declared(model, "output_names", len(outputs)) or default_out,
    )


def _declared(model: nn.Module, attribute: str, count: int) -> list[str] | None:
    names = getattr(model, attribute, None)
    if names is None:
        return None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{type(model).__name__}.{attribute}={names!r}: a list of names.")
    if len(names) != count:
        raise ConfigError(
            f"{type(model).__name__}.{attribute}={list(names)} names {len(names)}, but forward "
            f"{'takes' if attribute == 'input_names' else 'returns'} {count} tensor(s)."
        )
    return list(names)


# ---- the formats --------------------------------------------------------------------------------
def save_state_dict(net: nn.Module, path: Path) -> Path:
    """The plain network's weights: `Net(**args).load_state_dict(torch.load(path, weights_only=True))`."""
    buffer = io.BytesIO()  # torch.save to a file raises RuntimeError on a full disk
    torch.save(net.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def export_torchscript(model: pl.LightningModule, example: Inputs, path: Path) -> Callable:
    """`model.to_torchscript(method="trace")` → `model.ts`; returns the file loaded back."""
    with (
        warnings.catch_warnings()
    ):  # TorchScript is deprecated in torch and Lightning; still served
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # strict=False: a forward may return a dict or a list of tensors
        scripted = model.to_torchscript(method="trace", example_inputs=example, strict=False)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return torch.jit.load(str(path), map_location="cpu")


def export_onnx(
    model: pl.LightningModule,
    example: Inputs,
    path: Path,
    names: tuple[list[str], list[str]],
    opset: int | None = None,
) -> Callable:
    """`model.to_onnx` (torch's dynamo exporter, batch dimension dynamic) → `model.onnx`, one
    self-contained file, checked by `onnx.checker`; returns an onnxruntime session as a function."""
    import onnx
    import onnxruntime

    for name in ("onnxscript", "onnx_ir"):  # their optimizer passes log every step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    input_names, output_names = names
    batch = torch.export.Dim("batch")
    program = model.to_onnx(
        None,
        example,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=tuple({0: batch} for _ in example),
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*xs: Tensor) -> list[Tensor]:
        feeds = {name: x.numpy() for name, x in zip(input_names, xs, strict=True)}
        return [torch.from_numpy(a) for a in session.run(None, feeds)]

    return run


@torch.inference_mode()
def max_abs_diff(reference: nn.Module, exported: Callable, inputs: Inputs) -> float:
    """Largest |exported - reference| over every output value of the batch."""
    expected = flat_outputs(reference(*inputs))
    actual = flat_outputs(exported(*inputs))
    if len(actual) != len(expected):
        raise ExportError(f"{len(actual)} output(s), PyTorch's forward {len(expected)}")
    diff = 0.0
    for a, e in zip(actual, expected, strict=True):
        if tuple(a.shape) != tuple(e.shape):
            raise ExportError(f"output shape {list(a.shape)} != PyTorch's {list(e.shape)}")
        if e.numel():
            diff = max(diff, float((a.float() - e.float()).abs().max()))
    return diff


def export_model(
    model: pl.LightningModule,
    datamodule,
    output_dir: Path,
    formats: Sequence[str],
    atol: float = 1e-4,
    batch_size: int = 8,
    opset: int | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Write each format into `output_dir` and check it; return `({format: max abs diff},
    {format: why it failed})`. A full disk and a check beyond `atol` end the run; a format that
    cannot be produced is one warning line and the others go on."""
    model = model.cpu().eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    trace, check, source = example_inputs(model, datamodule, batch_size)
    with torch.inference_mode():
        reference = model(*trace)
    names = io_names(model, trace, reference)
    exporters = {
        "torchscript": lambda path: export_torchscript(model, trace, path),
        "onnx": lambda path: export_onnx(model, trace, path, names, opset),
    }
    diffs: dict[str, float] = {}
    failed: dict[str, str] = {}
    for fmt in dict.fromkeys(formats):
        path = output_dir / FILES[fmt]
        try:
            diff = max_abs_diff(model, exporters[fmt](path), check)
        except (OSError, ExportError):
            raise  # a full disk: one line naming the file (expkit/run/lifecycle.py)
        except Exception as err:  # forward cannot be traced / exported, or its file does not run
            path.unlink(missing_ok=True)
            failed[fmt] = f"{type(err).__name__}: {_first_line(err)}"
            log.warning(
                "%s export of %s failed, nothing written: %s",
                fmt,
                type(model).__name__,
                failed[fmt],
            )
            continue
        log.info(
            "%s: %s, max abs difference from PyTorch on a batch of %d (%s): %.3g (allowed < %g)",
            fmt,
            path,
            len(check[0]),
            source,
            diff,
            atol,
        )
        if not diff < atol:
            raise ExportError(
                f"{fmt} export {path} differs from the PyTorch model by {diff:.3g} on a batch of "
                f"{len(check[0])} (export.atol={atol}); the file was kept for inspection."
            )
        diffs[fmt] = diff
    return diffs, failed


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else "no detail"
