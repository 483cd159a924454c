"""What a project's tests (and the library's own) need: configs composed as the command line
would, fast, the command line itself, a run's results, a datamodule set up for fit. One definition
for both suites, shipped with the library so that its fixes reach a project's tests too. The
fixtures that go with them are in `expkit.testing.fixtures`."""

import copy
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from expkit.project import LIBRARY_CONFIG_DIR, project_config_dir, project_root
from expkit.run import compose as _compose
from expkit.run.cli import as_additions, is_config_group
from expkit.run.record import RunRecord

__all__ = [
    "FAST",
    "PLOT",
    "compose_config",
    "config_options",
    "results",
    "run_cli",
    "setup_datamodule",
    "threads_for_tests",
    "write_mnist",
]

#: keeps in-process runs short and quiet; tests add their own overrides after these (no
#: curves.png: matplotlib's drawing is the slowest part of a tiny run; plot tests turn it on)
FAST = [
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "logger=csv",
    "~callbacks.rich_progress_bar",
    "callbacks.history.plot=false",
]
PLOT = "callbacks.history.plot=true"

_COMPOSED: dict[tuple[Any, ...], DictConfig] = {}


def compose_config(
    name: str,
    output_dir: str | Path,
    overrides: Sequence[str] = (),
    cache_dir: str | Path | None = None,
) -> DictConfig:
    """`expkit.run.compose.compose_config`, with the defaults tree composed once per (task, config
    group choices, config files) in a test process.

    Hundreds of tests compose the same few group choices with different values, and Hydra parses
    every YAML file and rebuilds the defaults tree each time. Hydra itself composes the defaults
    list first and then applies the value overrides to the result
    (`ConfigLoaderImpl._apply_overrides_to_config`); this does the same on a copy of the cached
    composition. Anything it does not handle the same way (a `hydra.` key, an error) goes through
    Hydra's full compose, so error messages are Hydra's own; the template's test_configs.py checks
    that both give the same config."""
    if name != "train":  # restoring tasks take `data=...` as `+data=...` (as_additions)
        overrides = as_additions(list(overrides))
    try:
        paths = _compose.path_overrides(output_dir, cache_dir)
        parsed = OverridesParser.create().parse_overrides([*paths, *overrides])
        choices = [str(o.input_line) for o in parsed if _chooses_a_config(o)]
        values = [o for o in parsed if not _chooses_a_config(o)]
        key = (name, tuple(choices), _config_files_stamp())
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose.compose_config(name, output_dir, choices)
        cfg = copy.deepcopy(_COMPOSED[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg
    except Exception:  # Hydra's full compose says what is wrong, in its own words
        return _compose.compose_config(name, output_dir, list(overrides), cache_dir)


def _chooses_a_config(override: Override) -> bool:
    """A config group choice (`data=mnist`, `~logger`, `hydra/launcher=...`) shapes the defaults
    tree; anything under `hydra.` lives in the node compose drops. Both go to Hydra's compose."""
    key = override.key_or_group
    return (
        override.package is not None
        or "/" in key
        or key.split(".")[0] == "hydra"
        or is_config_group(key)
    )


def _config_files_stamp() -> tuple[tuple[str, int], ...]:
    """Changes when a config file is added, removed or edited (a test may add a user's config)."""
    files = sorted(project_config_dir().rglob("*.yaml"))
    return tuple((str(f), f.stat().st_mtime_ns) for f in files)


def config_options(group: str) -> list[str]:
    """Every option (file) of a config group, the project's and the library's."""
    dirs = (project_config_dir() / group, LIBRARY_CONFIG_DIR / group)
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml")})


def run_cli(
    args: list[str],
    cwd: Path | None = None,
    timeout: int = 600,
    env: dict[str, str] | None = None,
    path: Sequence[str | Path] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a command line as a user would type it (`python src/train.py ...`) in the project (or
    `cwd`), with the project's root and then `path` first on the import path."""
    root = project_root()
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    first = [*map(str, path), str(root)]
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [*first, environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd or root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
    )


def results(run_dir: Path | str) -> dict[str, Any]:
    """A run's results.json, as written."""
    return RunRecord.read(run_dir).to_json()


def setup_datamodule(cls: type, data_dir: str | Path, cache_dir: Any = None, **kw: Any) -> Any:
    """A datamodule reading small files a test wrote in the real format, prepared and set up for
    fit: 10 classes, 10 validation samples, no download, unless `kw` says otherwise."""
    params = {"num_classes": 10, "data_dir": str(data_dir), "val_size": 10, "download": False}
    dm = cls(**{**params, "cache_dir": cache_dir, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def write_mnist(
    root: str | Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20, seed: int = 0
) -> Path:
    """`root/<folder>/raw/*-ubyte` in MNIST's IDX format (what torchvision's MNIST and
    Fashion-MNIST read): 28x28 uint8 images, each class a bright bar in its own row band, so a
    classifier can learn them; labels 0..9 in turn. Returns `root`."""
    import struct

    import numpy as np

    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count, dtype=np.uint8) % 10
        images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        header = struct.pack(">IIII", 0x0803, count, 28, 28)  # ubyte, 3 dims
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = struct.pack(">II", 0x0801, count)  # ubyte, 1 dim
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return Path(root)


def threads_for_tests(previous: int) -> int:
    """Torch threads for a test process: its share of the cores among the xdist workers, at most
    2 (and at most what it had)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(previous, 2, (os.cpu_count() or 1) // workers))
