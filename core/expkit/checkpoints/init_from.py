"""Start a new run from another run's weights: `python src/train.py init_from=<ckpt>`.

Unlike `ckpt_path=` (which continues a fit: weights, optimizer, epoch counter, callbacks' state),
this takes only the weights; the new run has its own directory, optimizer, schedule and epochs.
That is fine-tuning: on another dataset, with another head, or with part of the network only
(`init_from_keys=[net.layers.1]`: weights under those prefixes).

Trust: the file is data. It is read with `torch.load(weights_only=True)` (a pickle that would run
code is refused) and only its tensors are used; the run config stored in it is never read, so
nothing in it decides what gets built. The model comes from this run's own config.

A weight whose shape differs from the model's (a new class count, a wider layer) is not loaded,
and neither is the rest of its module (a head keeps its new weight *and* bias together); the log
names every such key with both shapes. Metric states (torchmetrics, e.g. the best validation
accuracy so far) belong to the old run and are never copied. Accepted files: a Lightning
checkpoint written by src/train.py, or a plain `state_dict` such as export's `net.pt` (keys of the
network alone, matched under `net.`).
"""

import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from expkit.errors import CheckpointError, ConfigError
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

ALLOWED_FILE = (
    "a .ckpt written by src/train.py (logs/train/runs/<run>/checkpoints/last.ckpt) "
    "or a state_dict .pt (export's net.pt)"
)


@dataclass
class InitReport:
    """What `load_initial_weights` did, key by key (also stored in results.json as `init_from`)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    #: (key, shape in the file, shape in the model): left as the model initialised them
    reshaped: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    #: same-shape tensors of a module that had a reshaped one, left initialised with it
    skipped_with_module: list[str] = field(default_factory=list)
    #: in the file (and selected) but not in the model
    unexpected: list[str] = field(default_factory=list)
    #: in the model but not taken from the file (not there, or not selected)
    not_loaded: list[str] = field(default_factory=list)
    keys: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def log(self) -> None:
        total = len(self.loaded) + len(self.reshaped) + len(self.skipped_with_module)
        log.info(
            "init_from=%s: loaded %d weight tensor(s)%s; optimizer, epochs and schedule start afresh.",
            self.path,
            len(self.loaded),
            f" of {total} selected" if total != len(self.loaded) else "",
        )
        if self.reshaped:
            log.warning(
                "init_from: %d tensor(s) differ in shape and were left newly initialised: %s%s",
                len(self.reshaped),
                "; ".join(f"{k} (checkpoint {a}, model {b})" for k, a, b in self.reshaped),
                f"; with them, the rest of their module(s): {', '.join(self.skipped_with_module)}"
                if self.skipped_with_module
                else "",
            )
        if self.unexpected:
            log.info("init_from: %d tensor(s) not in this model: %s", *_few(self.unexpected))
        reported = {k for k, *_ in self.reshaped} | set(self.skipped_with_module)
        others = [k for k in self.not_loaded if k not in reported]
        if others:
            log.info("init_from: %d other model tensor(s) left as initialised: %s", *_few(others))


def _few(keys: list[str], n: int = 6) -> tuple[int, str]:
    return len(keys), ", ".join(keys[:n]) + (", …" if len(keys) > n else "")


def check_init_from(cfg: DictConfig) -> None:
    """The cheap checks, done with the other config checks before anything is built."""
    path, keys = cfg.get("init_from"), cfg.get("init_from_keys")
    if keys is not None and not path:
        raise ConfigError(
            f"init_from_keys={_plain(keys)} is set but init_from is not. Allowed: init_from_keys "
            "together with init_from=<checkpoint>."
        )
    if not path:
        return
    if cfg.get("ckpt_path") and not cfg.get("resume"):
        raise ConfigError(
            f"init_from={path!r} and ckpt_path={cfg.ckpt_path!r} are both set. Allowed: one of them "
            "(ckpt_path continues a fit with its optimizer and epoch; init_from starts a new one "
            "from the weights only)."
        )
    _existing_file(path)
    _prefixes(keys)


def load_initial_weights(
    model: nn.Module, path: str | Path, keys: Sequence[str] | None = None
) -> InitReport:
    """Copy the weights of the checkpoint at `path` into `model` where names and shapes match.

    `keys`: prefixes of the model's state_dict to take (`net.layers.1` takes `net.layers.1.*`);
    None takes every weight. Raises `ConfigError`/`CheckpointError` (one line each) for a missing
    or unreadable file, a prefix that selects nothing, or a file none of whose weights fit.
    """
    path = _existing_file(path)
    prefixes = _prefixes(keys)
    state = _as_state_dict(_read(path), path, model)
    ours = model.state_dict()
    metric_prefixes = _metric_prefixes(model)
    report = InitReport(path=str(path), keys=prefixes)

    def wanted(key: str) -> bool:
        if any(key == p or key.startswith(p + ".") for p in metric_prefixes):
            return False
        return prefixes is None or any(key == p or key.startswith(p + ".") for p in prefixes)

    for prefix in prefixes or ():
        if not any(k == prefix or k.startswith(prefix + ".") for k in state):
            raise ConfigError(
                f"init_from_keys: {prefix!r} selects nothing in {path}. Allowed: prefixes of its "
                f"weights, e.g. {', '.join(_module_names(state)[:8])}."
            )
    selected = {k: v for k, v in state.items() if wanted(k)}
    report.unexpected = [k for k in selected if k not in ours]
    reshaped = {
        k: (list(v.shape), list(ours[k].shape))
        for k, v in selected.items()
        if k in ours and tuple(v.shape) != tuple(ours[k].shape)
    }
    bad_modules = {k.rsplit(".", 1)[0] for k in reshaped}
    take: dict[str, torch.Tensor] = {}
    for key, value in selected.items():
        if key not in ours:
            continue
        if key in reshaped:
            report.reshaped.append((key, *reshaped[key]))
        elif key.rsplit(".", 1)[0] in bad_modules:
            report.skipped_with_module.append(key)
        else:
            take[key] = value
    if not take:
        raise CheckpointError(
            f"init_from={str(path)!r}: none of its {len(selected)} selected weight(s) fit this "
            f"model ({_describe_misfit(report)}). Allowed: {ALLOWED_FILE} of a model with some "
            "layers of the same names and shapes."
        )
    with torch.no_grad():
        for key, value in take.items():
            ours[key].copy_(value)  # state_dict tensors share storage with the model's
    report.loaded = list(take)
    report.not_loaded = [k for k in ours if k not in take and not _is_metric(k, metric_prefixes)]
    report.log()
    return report


# ---- reading ------------------------------------------------------------------------------------
def _existing_file(path: str | Path) -> Path:
    path = Path(str(path)).expanduser()
    if not path.is_file():
        where = (
            "is a directory"
            if path.is_dir()
            else "is not a regular file"
            if path.exists()
            else f"does not exist (looked in {path.resolve()})"
        )
        raise ConfigError(f"init_from={str(path)!r} {where}. Allowed: {ALLOWED_FILE}.")
    return path


def _prefixes(keys: Any) -> list[str] | None:
    if keys is None:
        return None
    keys = _plain(keys)
    if isinstance(keys, str):
        keys = [keys]
    if (
        not isinstance(keys, list)
        or not keys
        or not all(isinstance(k, str) and re.fullmatch(r"[\w.]+", k) for k in keys)
    ):
        raise ConfigError(
            f"init_from_keys={keys!r} is not allowed. Allowed: null (every weight) or a list of "
            "state_dict prefixes, e.g. init_from_keys=[net.layers.1,net.layers.4]."
        )
    return [k.strip(".") for k in keys]


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _read(path: Path) -> Any:
    try:
        return torch.load(
            path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global:\s*([^\n]+?)(?: was|\. |\n|$)", str(err))
        if not found:  # not a pickle that names code: bytes that are no pickle at all
            raise CheckpointError(
                f"init_from={str(path)!r} is not a readable torch checkpoint (truncated, or not "
                f"written by torch.save). Allowed: {ALLOWED_FILE}."
            ) from None
        detail = found.group(1)
        raise CheckpointError(
            f"Refusing init_from={str(path)!r}: it holds objects other than tensors and plain "
            f"containers ({detail}), and unpickling them could run code. Allowed: {ALLOWED_FILE}."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError) as err:
        reason = str(err).split(". ")[0].splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"init_from={str(path)!r} is not a readable torch checkpoint (truncated, or not written "
            f"by torch.save): {reason}. Allowed: {ALLOWED_FILE}."
        ) from None


def _as_state_dict(loaded: Any, path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A Lightning checkpoint's `state_dict`, or a plain state_dict (put under `net.` when its
    keys are the network's own, as in export's net.pt)."""
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
    tensors = (
        {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if isinstance(state, dict)
        else {}
    )
    if not tensors:
        what = f"a {type(loaded).__name__}" + (
            f" with keys {sorted(map(str, loaded))[:6]}" if isinstance(loaded, dict) else ""
        )
        raise CheckpointError(
            f"init_from={str(path)!r} holds no weights ({what}, no tensors). Allowed: {ALLOWED_FILE}."
        )
    ours = model.state_dict()
    if not any(k in ours for k in tensors):
        for prefix, _ in model.named_children():
            moved = {f"{prefix}.{k}": v for k, v in tensors.items()}
            if any(k in ours for k in moved):
                return moved
    return tensors


def _metric_prefixes(model: nn.Module) -> list[str]:
    """State of torchmetrics metrics: the old run's running values, never a weight to reuse."""
    try:
        from torchmetrics import Metric
    except ImportError:
        return []
    return [name for name, m in model.named_modules() if name and isinstance(m, Metric)]


def _is_metric(key: str, prefixes: list[str]) -> bool:
    return any(key.startswith(p + ".") for p in prefixes)


def _module_names(state: dict[str, torch.Tensor]) -> list[str]:
    return list(dict.fromkeys(k.rsplit(".", 1)[0] for k in state))


def _describe_misfit(report: InitReport) -> str:
    parts = []
    if report.reshaped:
        k, a, b = report.reshaped[0]
        parts.append(
            f"{len(report.reshaped)} of another shape, e.g. {k}: checkpoint {a}, model {b}"
        )
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} the model lacks, e.g. {report.unexpected[0]}")
    return "; ".join(parts) or "no weights selected"
