"""What `trainer.accelerator` means on this machine: one answer for validation, training and inference."""

import os

import torch


def resolve_accelerator(accelerator: str) -> str:
    """`auto` → what Lightning picks here (gpu, mps or cpu); `cuda` → gpu; other names unchanged."""
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "gpu"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    return "gpu" if accelerator == "cuda" else accelerator


def available_devices(kind: str) -> int:
    """How many devices of a resolved kind this process may use (CPU: the cores it may run on)."""
    if kind == "gpu":
        return torch.cuda.device_count()
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_device(accelerator: str) -> torch.device:
    """The torch device for inference outside a Trainer (predict, export)."""
    kind = resolve_accelerator(accelerator)
    return torch.device({"gpu": "cuda", "mps": "mps"}.get(kind, "cpu"))
