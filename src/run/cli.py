"""What `python src/<task>.py …` runs around the Hydra entry point, and nothing else does.

- `resume=<run_dir>` is expanded into that run's own overrides before Hydra composes (see
  `src/run/resume_args.py` for why it cannot happen later), and the run directory is locked from
  then on: a second writer exits before Hydra opens the run's log.
- A new run into an existing run's directory (`hydra.run.dir=<run>` without `resume=`) is refused
  before Hydra writes there (`src/run/one_run.py`).
- eval/predict/export configs hold only their own keys; a typed override of a key the checkpoint
  supplies (`data.batch_size=256`, `data=mnist`) is passed to Hydra as an addition (`+…`).
- The process ends without the interpreter's teardown (`src/run/exit.py`: ~127 MB and ~0.8 s of
  torch's library destructors, after everything of the run is written).
- When Hydra rejects a key (`trainer.max_epoch=3`), its message names the key and the value but not
  what is allowed; afterwards this prints the keys that exist there and the closest one. It runs
  only after a failed start, so a good command pays nothing for it.
"""

import difflib
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.run.exit import exit_after_run
from src.run.lock import acquire, is_rank_zero, release
from src.run.one_run import refuse_new_run_in_existing_dir
from src.run.resume_args import expand_resume_args, override_key, resume_dir
from src.utils.errors import TemplateError
from src.utils.resolvers import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "configs"
_ABSENT = object()


def is_config_group(key: str) -> bool:
    """Whether an override's key names a config group (`data`, `hydra/launcher`): a folder of
    options under configs/, chosen with `key=option`, rather than a value in the config."""
    return (CONFIG_DIR / key).is_dir()


#: top-level keys eval/predict/export take from the checkpoint rather than from their own config
STORED_ROOTS = ("seed", "data", "model", "optimizer", "scheduler", "monitor")


def as_additions(args: list[str]) -> list[str]:
    """`data=mnist` → `+data=mnist`, `data.batch_size=256` → `++data.batch_size=256`, for the keys
    the checkpoint supplies (the restoring tasks' own configs do not hold them)."""
    out = []
    for arg in args:
        key = override_key(arg)
        if (
            arg.startswith(("-", "+", "~"))
            or "=" not in arg
            or key.split(".")[0] not in STORED_ROOTS
        ):
            out.append(arg)
        elif is_config_group(key):
            out.append(f"+{arg}")
        else:
            out.append(f"++{arg}")
    return out


def run_entry_point(main: Callable[[], Any], config_name: str) -> None:
    """Call a `@hydra.main` function with `sys.argv`, adding the services above."""
    args = sys.argv[1:]
    locked = None
    try:
        if config_name == "train":
            args = expand_resume_args(args)
            locked = resume_dir(args)
            if locked is not None and not (is_rank_zero() and acquire(locked)):
                locked = None
        else:
            args = as_additions(args)
        refuse_new_run_in_existing_dir(args, config_name)
    except TemplateError as err:
        sys.exit(str(err))  # printed to stderr, exit status 1, like Hydra's own errors
    sys.argv = [sys.argv[0], *args]
    code: object = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
        if exit_.code not in (0, None):
            for hint in unknown_key_hints(config_name, sys.argv[1:]):
                sys.stderr.write(hint + "\n")
    finally:
        if locked is not None:
            release(locked)
    exit_after_run(code)  # an exception other than SystemExit left above, with its traceback


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
    groups = [o for o in overrides if is_config_group(o.key_or_group)]
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
            cfg = compose(config_name, overrides=[o.input_line or "" for o in groups])
    except Exception:  # an unknown group option: Hydra listed the allowed ones already
        return []
    finally:
        GlobalHydra.instance().clear()
    hints = (_hint(cfg, o.key_or_group, o.input_line or str(o)) for o in keys)
    return [h for h in hints if h]


def _hint(cfg: DictConfig, key: str, typed: str) -> str | None:
    if (
        OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        is not _ABSENT
    ):
        return None
    parent_key, _, last = key.rpartition(".")
    holder = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    # a key whose value is ??? (ckpt_path: ???) is a key: `in` says False for it, keys() lists it
    if isinstance(holder, DictConfig) and last in holder.keys():  # noqa: SIM118
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
