"""The config as the run used it, saved beside its results: `config.yaml` and `config_tree.log`."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from expkit.utils.atomic import atomic_open, atomic_write_text

#: the order the printed tree shows the top-level keys in (the rest follow)
CONFIG_ORDER = (
    "data",
    "model",
    "optimizer",
    "scheduler",
    "callbacks",
    "logger",
    "trainer",
    "paths",
)


@rank_zero_only
def save_resolved_config(cfg: DictConfig, output_dir: str | Path) -> None:
    """`config.yaml`: the config with every interpolation resolved, exactly as this run used it."""
    atomic_write_text(Path(output_dir) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _config_tree(cfg: DictConfig):  # -> rich.tree.Tree (rich imported only when it is needed)
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in CONFIG_ORDER if k in cfg] + [k for k in cfg if k not in CONFIG_ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    return tree


@rank_zero_only
def save_config_tree(cfg: DictConfig, output_dir: str | Path, show: bool = False) -> None:
    """Save the composed config as a tree in `config_tree.log`; with `show`, print it too."""
    from rich.console import Console

    tree = _config_tree(cfg)
    if show:
        import rich

        rich.print(tree)
    with atomic_open(Path(output_dir) / "config_tree.log", "w") as f:
        Console(file=f, width=120, color_system=None).print(tree)
