"""Checkpoints that appear under their final name only when complete.

Lightning's `TorchCheckpointIO` serializes into memory and then writes the bytes straight into the
final file: a full disk or a kill during that write leaves a truncated `epoch_003.ckpt` or
`last.ckpt`, which a later `resume=` would pick. This plugin writes the same bytes to a temp file
in the same directory, fsyncs and renames it (`expkit.utils.atomic`), so the previous good checkpoint
stays whole until the new one is. Every checkpoint writer goes through it: ModelCheckpoint,
the interrupt checkpoint, SLURM's `hpc_ckpt_*`. Remote paths (s3://…) keep Lightning's own way.
"""

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from expkit.utils.atomic import atomic_write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(
                "`Trainer.save_checkpoint(..., storage_options=...)` is not supported by "
                f"{type(self).__name__}: it writes local files only."
            )
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())
