"""What the template's tests need, from the library's test helpers (`expkit.testing`), with this
checkout as the project."""

from pathlib import Path

from expkit.testing import FAST, PLOT, compose_config, config_options, results, run_cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

__all__ = [
    "CONFIG_DIR",
    "FAST",
    "PLOT",
    "ROOT",
    "compose_config",
    "config_options",
    "results",
    "run_cli",
]
