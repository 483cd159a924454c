"""What `python src/<task>.py …` runs around the Hydra entry point, and nothing else does.

- `resume=<run_dir>` is expanded into that run's own overrides before Hydra composes (see
  `src/utils/resume.py` for why it cannot happen later).
- When Hydra rejects a key (`trainer.max_epoch=3`), its message names the key and the value but not
  what is allowed; afterwards this prints the keys that exist there and the closest one. It runs
  only after a failed start, so a good command pays nothing for it.
"""

import difflib
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.utils.errors import TemplateError
from src.utils.resolvers import PROJECT_ROOT
from src.utils.resume import expand_resume_args

CONFIG_DIR = PROJECT_ROOT / "configs"
_ABSENT = object()


def run_entry_point(main: Callable[[], Any], config_name: str, resume: bool = False) -> None:
    """Call a `@hydra.main` function with `sys.argv`, adding the two services above."""
    if resume:
        try:
            sys.argv = [sys.argv[0], *expand_resume_args(sys.argv[1:])]
        except TemplateError as err:
            sys.exit(str(err))  # printed to stderr, exit status 1, like Hydra's own errors
    try:
        main()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            for hint in unknown_key_hints(config_name, sys.argv[1:]):
                sys.stderr.write(hint + "\n")
        raise


def unknown_key_hints(config_name: str, args: list[str]) -> list[str]:
    """For each `key=value` whose key the composed config lacks: the keys allowed there."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if not a.startswith("-")]
        )
    except Exception:  # a syntax error: Hydra's own message is the right one
        return []
    groups = [o for o in overrides if (CONFIG_DIR / o.key_or_group).is_dir()]
    keys = [
        o
        for o in overrides
        if o not in groups
        and o.type == OverrideType.CHANGE
        and not o.key_or_group.startswith("hydra")
    ]
    if not keys:
        return []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=[o.input_line for o in groups])
    except Exception:  # an unknown group option: Hydra listed the allowed ones already
        return []
    finally:
        GlobalHydra.instance().clear()
    return [h for o in keys if (h := _hint(cfg, o.key_or_group, o.input_line))]


def _hint(cfg: DictConfig, key: str, typed: str) -> str | None:
    if (
        OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        is not _ABSENT
    ):
        return None
    parts = key.split(".")
    depth = len(parts) - 1
    while depth > 0 and not isinstance(OmegaConf.select(cfg, ".".join(parts[:depth])), DictConfig):
        depth -= 1
    parent = ".".join(parts[:depth])
    node = OmegaConf.select(cfg, parent) if parent else cfg
    allowed = sorted(str(k) for k in node)
    close = difflib.get_close_matches(parts[depth], allowed, n=1)
    where = f"under {parent}" if parent else "at the top level"
    guess = f" Did you mean {'.'.join([*parts[:depth], close[0]])}?" if close else ""
    return f"{typed}: {key} is not a key of this config.{guess} Allowed keys {where}: {', '.join(allowed)}."
