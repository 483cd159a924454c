"""What many of the library's tests need: configs composed as the command line would, the command
line itself, a run's results, and faults on cue. One definition each.

The tests run against the test bed `project/` (conftest.py says why and how), never against the
folder this file is in: `ROOT` is the test bed."""

import copy
import os
import subprocess
import sys
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from expkit.run import compose as _compose
from expkit.run.cli import as_additions, is_config_group
from expkit.run.record import RunRecord

TESTS = Path(__file__).resolve().parent
ROOT = TESTS / "project"
CONFIG_DIR = ROOT / "configs"
PYTHON = sys.executable
#: what a spawned command needs on its path: the test bed's `src` and these tests' modules (the
#: fault-injection callbacks and test modules that tests name as `_target_`s)
PYTHONPATH = os.pathsep.join([str(TESTS), str(ROOT)])

#: keeps in-process runs short and quiet; tests add their own overrides after these (no
#: curves.png: matplotlib's drawing costs ~0.2 s a run; the tests of the plot turn it back on)
FAST = [
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "logger=csv",
    "~callbacks.rich_progress_bar",
    "callbacks.history.plot=false",
]
PLOT = "callbacks.history.plot=true"

__all__ = [
    "FAST",
    "PLOT",
    "PYTHON",
    "PYTHONPATH",
    "TESTS",
    "ROOT",
    "compose_config",
    "config_options",
    "fault",
    "results",
    "run_cli",
    "threads_for_tests",
]


_COMPOSED: dict[tuple, DictConfig] = {}


def compose_config(
    name: str,
    output_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
) -> DictConfig:
    """`expkit.run.compose.compose_config`, with the defaults tree composed once per (task, config
    group choices) in a test process.

    Hydra takes ~0.25 s a compose (21 YAML files parsed, the defaults tree rebuilt) and hundreds of
    tests compose the same few group choices with different values. Hydra itself composes the
    defaults list first and then applies the value overrides to the result
    (`ConfigLoaderImpl._apply_overrides_to_config`); this does the same on a copy (~10 ms) of the
    cached composition. Anything this does not handle the same way (a `hydra.` key, an error) goes
    through Hydra's full compose, so error messages are Hydra's own. `test_configs.py` checks that
    both give the same config."""
    if (
        name != "train"
    ):  # restoring tasks take `data=...` as `+data=...` (expkit.run.cli.as_additions)
        overrides = as_additions(list(overrides))
    try:
        paths = _compose.path_overrides(output_dir, cache_dir)
        parsed = OverridesParser.create().parse_overrides([*paths, *overrides])
        choices: list[str] = []
        values: list[Override] = []
        for override in parsed:
            if _chooses_a_config(override):
                choices.append(override.input_line)
            else:
                values.append(override)
        key = (name, tuple(choices), _config_files_stamp())
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose.compose_config(name, output_dir, choices)
        cfg = copy.deepcopy(_COMPOSED[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg
    except Exception:  # Hydra's full compose says what is wrong, in its own words
        return _compose.compose_config(name, output_dir, overrides, cache_dir)


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


def _config_files_stamp() -> tuple:
    """Changes when a config file is added, removed or edited (a test may add a user's config)."""
    return tuple((str(f), f.stat().st_mtime_ns) for f in sorted(CONFIG_DIR.rglob("*.yaml")))


def config_options(group: str) -> list[str]:
    """Every option (file) of a config group, the project's and the library's."""
    from expkit.project import LIBRARY_CONFIG_DIR

    dirs = (CONFIG_DIR / group, LIBRARY_CONFIG_DIR / group)
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml")})


def run_cli(
    args: list[str], cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command line as a user would type it (`python src/train.py ...`) in the test bed."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PYTHONPATH, environ.get("PYTHONPATH")]))
    return subprocess.run(
        [PYTHON, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environ
    )


def results(run_dir: Path | str) -> dict:
    """A run's results.json, as written."""
    return RunRecord.read(run_dir).to_json()


def fault(kind: str, **params: object) -> list[str]:
    """Overrides adding a fault-injection callback (`core/tests/fault_injection.py`)."""
    overrides = [f"+callbacks.fault._target_=fault_injection.{kind}"]
    return overrides + [f"+callbacks.fault.{k}={v}" for k, v in params.items()]


def threads_for_tests(previous: int) -> int:
    """Torch threads for a test (and for module fixtures whose runs tests compare against)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(previous, 2, (os.cpu_count() or 1) // workers))
