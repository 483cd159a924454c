"""Which callables a config read from elsewhere may build: those our own config files name.

A checkpoint that loads with `weights_only=True` is still data chosen by whoever wrote it, and so
is a run directory's `.hydra/overrides.yaml`. Their configs may set values (sizes, learning rates,
paths), but a `_target_` is a callable `hydra.utils.instantiate` will call: `builtins.open`,
`shutil.rmtree` or `torch.save` would run as readily as a network class. Hydra 1.3 blocks only a
short list of names and says itself that it is no security boundary. So before anything is built
from stored state, every `_target_` in it, at any depth (`_partial_`, `_args_`, lists, nested
nets, callbacks, loggers), must be one that a YAML file under `configs/` names (the user's clone,
their own additions included) or the library's configs name, or one the user trusted exactly with
`trusted_targets=[a.b.C]`. A prefix is never enough: `torch.` alone would include `torch.save`.
A name a run stored before a class moved is first rewritten through the alias table
(`aliases.py`): it is accepted only as the current name it stands for.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from expkit.checkpoints.aliases import apply_aliases
from expkit.errors import ConfigError, UntrustedTargetError
from expkit.project import LIBRARY_CONFIG_DIR, project_config_dir
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)
TARGET_KEY = "_target_"


def find_targets(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """`(key path, value)` of every `_target_` in plain containers, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == TARGET_KEY:
                yield path, value
            else:
                yield from find_targets(value, path)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from find_targets(value, f"{where}[{i}]")


@functools.cache
def _targets_in_files(config_dir: Path, stamp: tuple[tuple[str, int], ...]) -> frozenset[str]:
    found: set[str] = set()
    for name, _ in stamp:
        try:
            data = yaml.safe_load((config_dir / name).read_text())
        except (OSError, yaml.YAMLError):  # a broken file fails where Hydra composes it
            continue
        found.update(t for _, t in find_targets(data) if isinstance(t, str))
    return frozenset(found)


def targets_in(config_dir: Path) -> frozenset[str]:
    """Every `_target_` named by a YAML file under `config_dir` (re-read when a file changes)."""
    files = sorted(config_dir.rglob("*.yaml"))
    stamp = tuple((str(p.relative_to(config_dir)), p.stat().st_mtime_ns) for p in files)
    return _targets_in_files(config_dir, stamp)


def project_targets() -> frozenset[str]:
    """The targets this project's configs and the library's configs name."""
    return targets_in(project_config_dir()) | targets_in(LIBRARY_CONFIG_DIR)


def trusted_targets(cfg: DictConfig) -> list[str]:
    """`trusted_targets` of the command being run (never of the stored config): exact names."""
    value = cfg.get("trusted_targets") or []
    names = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else None
    if names is None or not all(isinstance(n, str) and n and "*" not in n for n in names):
        raise ConfigError(
            f"trusted_targets={value!r} is not allowed: a list of exact dotted names, e.g. "
            "trusted_targets=[my_project.nets.MyNet] (no prefixes, no wildcards)."
        )
    return names


def check_targets(
    config: DictConfig | dict[str, Any], source: str, trusted: Iterable[str] = ()
) -> None:
    """Raise `UntrustedTargetError` naming `source`, the key and the target, for the first foreign one.

    Stored names of moved classes are first rewritten in `config` (in place) to their current names.
    """
    for old, new in apply_aliases(config):
        log.info("%s: stored target %s is now %s (alias table).", source, old, new)
    try:
        plain = (
            OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else config
        )
    except Exception as err:  # an interpolation that does not resolve could hide a target
        raise UntrustedTargetError(
            f"{source}: its config does not resolve ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}), so what it would build "
            "cannot be checked; nothing was built."
        ) from None
    allowed = project_targets() | set(trusted)
    for key, target in find_targets(plain):
        if isinstance(target, str) and target in allowed:
            continue
        shown = target if isinstance(target, str) else repr(target)
        raise UntrustedTargetError(
            f"{source}: {key}={shown!r} is not a target that any config under configs/ names, so "
            "nothing was built from it. If you trust it, allow exactly that name: "
            f"trusted_targets=[{shown}] on the command line or in your own config."
        )
