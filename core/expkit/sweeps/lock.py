"""One sweep per sweep directory: an OS lock on `hydra.sweep.dir`, taken when a multirun starts.

Two sweeps into one directory at once write the same job directories (`0/`, `1/`…): one job's
overrides end up beside another job's config and results. `SweepLock` is a Hydra callback
(`hydra.callbacks` in configs/hydra/default.yaml, first of them), so every sweeper and launcher
(basic, joblib, submitit, gpu_pool, Optuna) passes through it before any job starts: the first
sweep holds `flock` on `<sweep_dir>/.sweep.lock` until it ends; a second one exits at once with
one line, having written nothing. The lock dies with its process (SIGKILL included), so a sweep
resumed later into its own directory (a resumed Optuna study) takes it again. A sweep refused after
it took the lock (a bad sweeper setting) leaves no directory behind: at exit, the folders its lock
created are removed again if they hold nothing but the lock file.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from expkit.run.lock import describe_holder

SWEEP_LOCK_FILE = ".sweep.lock"

#: sweep directories this process holds (descriptor of each lock)
_held: dict[Path, int] = {}
#: sweep directory -> the outermost folder its lock created (removed at exit if still unused)
_created: dict[Path, Path] = {}


def lock_sweep_dir(sweep_dir: str | Path) -> None:
    """Hold the lock of `sweep_dir`, or exit with one line if another sweep holds it."""
    sweep_dir = Path(sweep_dir).resolve()
    if sweep_dir in _held:
        return
    path = sweep_dir / SWEEP_LOCK_FILE
    outermost = next((p for p in [*reversed(sweep_dir.parents), sweep_dir] if not p.exists()), None)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(  # a SystemExit: Hydra turns a callback's exceptions into warnings
            f"Sweep directory {sweep_dir} is in use by another sweep ({describe_holder(path)}): one "
            "sweep per sweep directory. Wait for it to end, or choose another hydra.sweep.dir."
        ) from None
    os.ftruncate(fd, 0)
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    os.write(fd, json.dumps(info).encode())
    _held[sweep_dir] = fd
    if outermost is not None:
        if not _created:
            atexit.register(_remove_unused)
        _created[sweep_dir] = outermost


def unlock_sweep_dir(sweep_dir: str | Path) -> None:
    fd = _held.pop(Path(sweep_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def _remove_unused() -> None:
    """Remove the folders a lock created for a sweep that never wrote into them."""
    for sweep_dir, outermost in list(_created.items()):
        try:
            if [p.name for p in sweep_dir.iterdir()] != [SWEEP_LOCK_FILE]:
                continue
            (sweep_dir / SWEEP_LOCK_FILE).unlink()
            folder = sweep_dir
            while True:
                folder.rmdir()  # only ever an empty folder
                if folder == outermost:
                    break
                folder = folder.parent
        except OSError:
            continue


class SweepLock(Callback):
    """Takes the sweep directory's lock when a multirun starts; releases it when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        lock_sweep_dir(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        unlock_sweep_dir(str(config.hydra.sweep.dir))
