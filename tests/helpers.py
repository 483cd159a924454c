"""Compose configs the way `python src/train.py ...` does, with outputs under a test directory."""

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import src.utils  # noqa: F401  (registers the resolvers the configs use)
from src.run.cli import as_additions

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
PYTHON = sys.executable

#: keeps in-process runs short and quiet; tests add their own overrides after these
FAST = [
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "logger=csv",
    "~callbacks.rich_progress_bar",
]


def compose_config(
    name: str, output_dir: Path, overrides: list[str] = (), cache_dir: Path | None = None
) -> DictConfig:
    """The config Hydra would build for `src/<name>.py <overrides>`, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    paths = [
        f"paths.output_dir={output_dir}",
        f"paths.work_dir={ROOT}",
        f"paths.log_dir={output_dir.parent}",
    ]
    if cache_dir is not None:
        paths.append(f"paths.cache_dir={cache_dir}")
    overrides = list(overrides) if name == "train" else as_additions(list(overrides))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=paths + overrides)


def config_options(group: str) -> list[str]:
    """Every option (file) of a config group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command line as a user would type it (`python src/train.py ...`)."""
    return subprocess.run(
        [PYTHON, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"},
    )
