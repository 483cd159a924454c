"""Read a checkpoint safely: tensors and plain containers only (`torch.load(weights_only=True)`)."""

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from expkit.errors import CheckpointError, ConfigError


def _first_sentence(err: BaseException) -> str:
    """The first sentence of an error message; the error's type when the message is empty."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    return text.split(". ")[0].splitlines()[0]


#: opcodes with which a pickle names or calls a Python object (what weights_only refuses to run)
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def _pickle_calls_code(path: Path, limit: int = 64 << 20) -> bool:
    """Whether a plain pickle file names callables (read with pickletools: nothing is executed).

    Tells a crafted pickle ("could run code") from garbage bytes ("not readable") where torch's
    own message says only "Unsupported operand"."""
    try:
        with path.open("rb") as f:
            data = f.read(limit)
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:  # not a pickle at all, or cut short before any such opcode
        return False


#: how torch names the callable a refused pickle would import ("Unsupported global: GLOBAL a.B was
#: not an allowed global", "unsupported GLOBAL os.system whose module os is blocked")
_NAMED_GLOBAL = re.compile(r"unsupported global:?\s*(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


def read_torch_file(
    path: Path,
    subject: str,
    allowed: str,
    kind: str = "torch checkpoint",
    error: type[Exception] = CheckpointError,
) -> Any:
    """`torch.load(path, weights_only=True)`; every failure is one `error` line naming `subject`
    and what is `allowed`. A pickle that would run code is refused as such (what it names is
    shown); torch's own advice to turn safe loading off is never passed on."""
    if path.is_file() and path.stat().st_size == 0:
        raise error(
            f"{subject} is not a readable {kind}: an empty file (0 bytes). Allowed: {allowed}."
        )
    try:
        mmap = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        named = _NAMED_GLOBAL.search(str(err))
        if named is None and not _pickle_calls_code(path):
            raise error(
                f"{subject} is not a readable {kind} (not written by torch.save): "
                f"{_first_sentence(err)}. Allowed: {allowed}."
            ) from None
        detail = named.group(1) if named else "not a tensor or plain container"
        raise error(
            f"Refusing to load {subject}: it holds objects other than tensors and plain "
            f"containers ({detail}), and unpickling them could run code. Allowed: {allowed}."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError) as err:
        raise error(
            f"{subject} is not a readable {kind} (truncated, or not written by torch.save): "
            f"{_first_sentence(err)}. Allowed: {allowed}."
        ) from None


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint's contents; a checkpoint whose pickle would run code is refused, never run.

    Zip checkpoints (what Lightning writes) are memory-mapped, so checking one before Lightning
    loads it again costs little memory.
    """
    path = Path(path)
    if (
        path.exists() and not path.is_file()
    ):  # a directory or a FIFO: never opened (a FIFO would wait)
        raise ConfigError(
            f"{key}={str(path)!r} is not a regular file. Pass the path of a .ckpt file, e.g. "
            "logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    if not path.is_file():
        raise ConfigError(
            f"{key}={str(path)!r} does not exist (looked in {path.resolve()}). Pass the path of a "
            ".ckpt file, e.g. logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    checkpoint = read_torch_file(
        path,
        str(path),
        "a complete .ckpt written by src/train.py, which holds only tensors and plain containers",
    )
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict. Allowed: a .ckpt "
            "written by src/train.py."
        )
    return checkpoint
