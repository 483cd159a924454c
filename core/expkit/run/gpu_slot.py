"""The GPU a pool launcher gave this job (`hydra/launcher=gpu_pool`), for its results.json.

The launcher (hydra_plugins/expkit_gpu_pool_launcher/) starts each job's process with
`CUDA_VISIBLE_DEVICES=<its GPU>` and tells it which GPU and slot that is in the environment
variables below (the launcher cannot import `src`: the names are kept the same on both sides, and
a test checks that they are). The GPU's name is read only if the job initialised CUDA itself:
asking it would otherwise start CUDA in a CPU job.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV_GPU = "GPU_POOL_GPU"
ENV_SLOT = "GPU_POOL_SLOT"
ENV_THREADS = "GPU_POOL_THREADS"


def pool_gpu(env: os._Environ | dict[str, str] = os.environ) -> dict[str, Any] | None:
    """`{"index", "slot", "name", "threads"}` of this job's GPU when a GPU pool started it, else None."""
    gpu = env.get(ENV_GPU)
    if gpu is None:
        return None
    slot = env.get(ENV_SLOT, "")
    name = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        try:
            name = torch.cuda.get_device_name(0)
        except Exception:  # a device that went away: the index is what matters
            name = None
    return {
        "index": int(gpu) if gpu.isdigit() else gpu,
        "slot": int(slot) if slot.isdigit() else slot,
        "name": name,
        "threads": int(env[ENV_THREADS]) if env.get(ENV_THREADS, "").isdigit() else None,
    }
