"""What stored state may set: values of the run, never where the program writes, deletes,
downloads or connects, nor Hydra's own settings.

Stored state is a checkpoint's run config (`eval/predict/export ckpt_path=…`) or a run directory's
`.hydra/overrides.yaml` (`train.py resume=…`). Both come from elsewhere, so the rule is a whitelist:

- A checkpoint gives `RESTORED_ROOTS` only (seed, data, model, optimizer, scheduler, monitor).
  Trainer, callbacks, loggers, profiler and `paths` come from this clone's configs. Inside what it
  gives, every location key (`is_location_key`: `data_dir`, `cache_dir`, `search_dirs`, …) is
  re-derived from this clone's `paths` (the expression this clone's own configs give that key), and
  `download` is false: the stored data's values, this clone's places.
- A run directory's overrides may set values and choose config groups (whose files are this
  clone's), but no override may target `hydra` (by key, by group or by `@package`) nor a location
  (`paths.*`, a `*dir`, `dirpath`, `filename`, `*_file`, `*uri`, `*url`, `download`): such a line
  is refused in one line, and typing the key now replaces the stored line.
- Nothing stored holds an interpolation: OmegaConf resolves `${oc.env:…}` and friends whenever a
  value is read, so a stored `${…}` is refused wherever it is, at any depth.
- Input files the run read (`data.root`, `data.path`, `init_from`) are values: they are read,
  never written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from expkit.errors import ConfigError
from expkit.project import project_config_dir

#: top-level keys eval/predict/export take from a checkpoint (everything else: this clone's)
RESTORED_ROOTS = ("seed", "data", "model", "optimizer", "scheduler", "monitor")
#: leaf names that say where something is written, fetched from or sent to
_LOCATION = re.compile(
    r"(?:^|_)(?:dir|dirs|dirpath|uri|url|host|endpoint|filenames?)$|_files?$|^download$"
)
#: top-level keys that are nothing but locations (or Hydra itself)
_LOCATION_ROOTS = {"paths", "hydra"}


def is_location_key(name: str) -> bool:
    """Whether a leaf key names a place (a directory, file name, URI) or a download switch."""
    return bool(_LOCATION.search(str(name)))


def interpolations(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """`(key path, text)` of every string holding `${`, at any depth (keys included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and "${" in key:
                yield path, key
            yield from interpolations(value, path)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from interpolations(value, f"{where}[{i}]")
    elif isinstance(node, str) and "${" in node:
        yield where, node


def refuse_interpolations(node: Any, source: str) -> None:
    """Raise for the first `${…}` in `node`: stored state is data, never resolved."""
    for key, text in interpolations(node):
        raise ConfigError(
            f"{source}: {key}={_short(text)!r} is an interpolation; stored state is never resolved "
            "(it could read the environment). Allowed: plain values; type the value now instead."
        )


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _clone_locations(config_dir: Path, stamp: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and is_location_key(key) and "${paths." in str(value):
                    found.setdefault(key, value)
                else:
                    walk(value)

    for name, _ in stamp:
        try:
            walk(yaml.safe_load((config_dir / name).read_text()))
        except (OSError, yaml.YAMLError):
            continue
    return found


def clone_locations() -> dict[str, Any]:
    """Location key → the expression this clone's data and model configs give it
    (`data_dir` → `${paths.data_dir}`, `cache_dir` → `${paths.cache_dir}`, …)."""
    config_dir = project_config_dir()
    files = sorted([*config_dir.glob("data/**/*.yaml"), *config_dir.glob("model/**/*.yaml")])
    stamp = tuple((str(p.relative_to(config_dir)), p.stat().st_mtime_ns) for p in files)
    return _clone_locations(config_dir, stamp)


def rederive_locations(node: Any, where: str, changed: list[str]) -> Any:
    """A copy of `node` whose location keys hold this clone's expression (or are dropped, so the
    class default applies) and whose `download` is false; `changed` gets each key replaced."""
    if isinstance(node, list):
        return [rederive_locations(v, f"{where}[{i}]", changed) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    ours = clone_locations()
    out: dict[Any, Any] = {}
    for key, value in node.items():
        path = f"{where}.{key}"
        if key == "download":
            out[key] = False
            if value is not False:
                changed.append(path)
        elif isinstance(key, str) and is_location_key(key):
            if key in ours:
                out[key] = ours[key]
            if key not in ours or value != ours[key]:
                changed.append(path)
        else:
            out[key] = rederive_locations(value, path, changed)
    return out


# ---- a run directory's overrides ------------------------------------------------------------------
def override_refusal(override: str) -> str | None:
    """Why a stored override may not be re-applied (None when it may): it targets Hydra or a place,
    or holds an interpolation."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if "${" in override:
        return "holds an interpolation (stored state is never resolved)"
    value: Any = None
    try:
        parsed = OverridesParser.create().parse_override(override)
        key, package = parsed.key_or_group, parsed.package or ""
        value = parsed.value()
    except Exception:  # not Hydra syntax: Hydra will say so; judge what it would read as the key
        key, package = override.split("=", 1)[0].lstrip("~+"), ""
        key, _, package = key.partition("@")
    nested = next((k for k in _keys(value) if is_location_key(k) or k == "hydra"), None)
    if nested is not None:
        return f"sets a location inside its value ({nested})"
    key = key.lstrip("~+")
    for name in (key, package.removeprefix("_global_").lstrip(".")):
        parts = [p for p in re.split(r"[./]", name) if p]
        if parts and parts[0] in _LOCATION_ROOTS:
            return f"sets {parts[0]}.* (by key or package)"
        if parts and is_location_key(parts[-1]) and (name == package or len(parts) > 1):
            return f"sets a location ({parts[-1]})"
    return None


def _keys(node: Any) -> Iterator[str]:
    """Every key of a dict value (`key={a: {b: 1}}`), at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _keys(value)


def check_stored_overrides(overrides: list[str], path: Path) -> None:
    """Refuse, in one line, the first stored override that may not be re-applied."""
    for override in overrides:
        why = override_refusal(override)
        if why:
            key = override.split("=", 1)[0]
            raise ConfigError(
                f"{path} holds {_short(override)!r}, which {why}: a run directory may set values "
                "of the run, never Hydra's own settings, paths or endpoints (those are re-derived "
                f"in the run directory). Allowed: type it yourself now (resume=… {key}=VALUE) "
                "or remove that line."
            )
