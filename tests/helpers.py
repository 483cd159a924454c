"""What many tests need: configs composed as the command line would, the command line itself,
a run's results, and faults on cue. One definition each."""

import os
import subprocess
import sys
from pathlib import Path

from src.run.compose import compose_config
from src.run.record import RunRecord

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
PYTHON = sys.executable

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
    "ROOT",
    "compose_config",
    "config_options",
    "fault",
    "results",
    "run_cli",
]


def config_options(group: str) -> list[str]:
    """Every option (file) of a config group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def run_cli(
    args: list[str], cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command line as a user would type it (`python src/train.py ...`), this checkout first
    on the path (its src/ and its hydra_plugins/)."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return subprocess.run(
        [PYTHON, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environ
    )


def results(run_dir: Path | str) -> dict:
    """A run's results.json, as written."""
    return RunRecord.read(run_dir).to_json()


def fault(kind: str, **params: object) -> list[str]:
    """Overrides adding a fault-injection callback (`tests/fault_injection.py`)."""
    overrides = [f"+callbacks.fault._target_=tests.fault_injection.{kind}"]
    return overrides + [f"+callbacks.fault.{k}={v}" for k, v in params.items()]
