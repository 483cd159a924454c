"""Compose a task's config in-process, as `python src/<task>.py <overrides>` would (notebooks,
tests, benchmarks): the same config directory, the same rewriting of typed overrides."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import expkit.utils  # noqa: F401  (registers the resolvers the configs use)
from expkit.project import project_config_dir, project_root
from expkit.run.cli import as_additions


def compose_config(
    name: str,
    output_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
) -> DictConfig:
    """The config of `src/<name>.py <overrides>`, writing into `output_dir` (no Hydra run needed)."""
    GlobalHydra.instance().clear()
    typed = list(overrides) if name == "train" else as_additions(list(overrides))
    with initialize_config_dir(str(project_config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=path_overrides(output_dir, cache_dir) + typed)


def path_overrides(output_dir: str | Path, cache_dir: str | Path | None = None) -> list[str]:
    """Where a run composed outside `python src/<task>.py` writes: `output_dir`, logs beside it."""
    output_dir = Path(output_dir)
    paths = [
        f"paths.output_dir={output_dir}",
        f"paths.work_dir={project_root()}",
        f"paths.log_dir={output_dir.parent}",
    ]
    if cache_dir is not None:
        paths.append(f"paths.cache_dir={cache_dir}")
    return paths
