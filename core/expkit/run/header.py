"""The few lines a run starts with: the task, its run directory, the choices and the overrides.

The whole composed config (~200 lines) buried the rest of a run's output; it is saved in the run
directory (`config.yaml`, `config_tree.log`) and printed only on request (`extras.print_config=full`).
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from expkit import __version__ as library_version
from expkit.run.config_files import CONFIG_ORDER
from expkit.run.summary import show_path

#: groups left out of the header while they hold their default option
QUIET_GROUPS = ("paths", "extras")


def _hydra_choices_and_overrides() -> tuple[dict[str, str], list[str]] | None:
    """The config-group choices and the command line's overrides, when Hydra composed this run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    chosen = {
        str(group): str(option)
        for group, option in hydra_cfg.runtime.choices.items()
        if option is not None
        and not str(group).startswith("hydra")
        and not (group in QUIET_GROUPS and option == "default")
    }
    order = [g for g in CONFIG_ORDER if g in chosen] + sorted(set(chosen) - set(CONFIG_ORDER))
    # as typed: reading the list through OmegaConf would resolve an `${oc.env:…}` in it
    typed = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    return {g: chosen[g] for g in order}, [str(o) for o in typed or []]


def header_text(cfg: DictConfig) -> str:
    """`train → logs/train/runs/<run>` and the lines under it (choices, overrides, config files)."""
    output_dir = Path(cfg.paths.output_dir)
    lines = [
        f"{cfg.get('task_name', 'run')} → {show_path(output_dir)}   (expkit {library_version})"
    ]
    composed = _hydra_choices_and_overrides()
    if composed is not None:
        choices, overrides = composed
        lines.append("  choices    " + " ".join(f"{g}={o}" for g, o in choices.items()))
        lines.append("  overrides  " + (" ".join(overrides) or "none"))
    lines.append(
        f"  config     {show_path(output_dir / 'config.yaml')} (the tree: config_tree.log; "
        "extras.print_config=full prints it)"
    )
    return "\n".join(lines)
