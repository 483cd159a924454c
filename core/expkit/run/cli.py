"""What `python src/<task>.py …` runs around the Hydra entry point, and nothing else does.

- `resume=<run_dir>` is expanded into that run's own overrides before Hydra composes (see
  `expkit/run/resume_args.py` for why it cannot happen later), and the run directory is locked from
  then on: a second writer exits before Hydra opens the run's log.
- A new run into an existing run's directory (`hydra.run.dir=<run>` without `resume=`) is refused
  before Hydra writes there (`expkit/run/one_run.py`).
- eval/predict/export configs hold only their own keys; a typed override of a key the checkpoint
  supplies (`data.batch_size=256`, `data=mnist`) is passed to Hydra as an addition (`+…`).
- The process ends without the interpreter's teardown (`expkit/run/exit.py`: ~127 MB and ~0.8 s of
  torch's library destructors, after everything of the run is written).
- A user error prints one line alone (`errors_in_one_line`): ours, or Hydra's about the command line.
  When Hydra rejects a key (`trainer.max_epoch=3`), its message names the key and the value but
  not what is allowed; the line printed instead names the keys that exist there and the closest
  one. It is composed only after a failed start, so a good command pays nothing for it.
"""

import difflib
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf

from expkit.errors import TemplateError, full_error_requested, user_error
from expkit.project import LIBRARY_CONFIG_DIR, project_config_dir
from expkit.run.exit import exit_after_run
from expkit.run.lock import acquire, is_rank_zero, release
from expkit.run.one_run import refuse_new_run_in_existing_dir
from expkit.run.resume_args import expand_resume_args, override_key, resume_dir

_ABSENT = object()


def is_config_group(key: str) -> bool:
    """Whether an override's key names a config group (`data`, `hydra/launcher`): a folder of
    options under the project's or the library's configs, chosen with `key=option`, rather than
    a value in the config."""
    return (project_config_dir() / key).is_dir() or (LIBRARY_CONFIG_DIR / key).is_dir()


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
        with errors_in_one_line(config_name, args):
            main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        if locked is not None:
            release(locked)
    exit_after_run(code)  # an exception other than SystemExit left above, with its traceback


@contextmanager
def errors_in_one_line(config_name: str, args: list[str]) -> Iterator[None]:
    """While Hydra runs: a user's error (ours, or Hydra's own about the command line) is one line
    on stderr and exit status 1; a bug keeps Hydra's traceback; `HYDRA_FULL_ERROR=1` (or a
    debugger) gets Hydra's full behaviour.

    Hydra prints errors in `hydra._internal.utils.run_and_report`, which `@hydra.main` looks up
    each time it runs: that name is wrapped for the duration of the call, and restored after.
    Hydra prints a compact error's message followed by its `HYDRA_FULL_ERROR` advice, and its
    composition errors over several lines (`Available options in 'model':` then one per line).
    """
    import hydra._internal.utils as hydra_internal

    original = hydra_internal.run_and_report

    def report(func: Callable[[], Any]) -> Any:
        if full_error_requested():
            return original(func)
        try:
            return func()
        except Exception as err:
            line = one_line_error(err, config_name, args)
            if line is None:  # a bug: Hydra prints its trimmed traceback and exits 1
                return original(functools.partial(_raise, err))
            sys.stderr.write(line + "\n")
            sys.exit(1)

    hydra_internal.run_and_report = report
    try:
        yield
    finally:
        hydra_internal.run_and_report = original


def _raise(err: BaseException) -> None:
    raise err


def one_line_error(err: BaseException, config_name: str, args: list[str]) -> str | None:
    """The one line a user error prints; None for anything else (a bug)."""
    from hydra.errors import (
        CompactHydraException,
        ConfigCompositionException,
        MissingConfigException,
    )
    from omegaconf.errors import OmegaConfBaseException

    ours = user_error(err)
    if ours is not None:
        return " ".join(str(ours).split("\n"))
    if not isinstance(err, CompactHydraException):
        return None
    if isinstance(err, ConfigCompositionException) and not isinstance(
        err, MissingConfigException
    ):  # a key that is not in the config: name the keys there, and the closest one
        hints = unknown_key_hints(config_name, args)
        if hints:
            return " ".join(hints)
    text = str(err)
    if isinstance(err.__cause__, OmegaConfBaseException):
        text += "\n" + str(err.__cause__).splitlines()[0]
    return flatten_message(text)


def flatten_message(text: str) -> str:
    """Hydra's multi-line message as one line; a list under a heading ending in ':' joined by
    commas (`Available options in 'model': cnn, mlp`)."""
    chunks: list[list[str]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line == "Config search path:":  # where Hydra looked: the same for every error
            break
        if not line:
            continue
        if chunks and chunks[-1][0].endswith(":"):
            chunks[-1].append(line)
        else:
            chunks.append([line])
    sentences = [f"{c[0]} {', '.join(c[1:])}" if len(c) > 1 else c[0] for c in chunks]
    return " ".join(s if s.endswith((".", ":", "?")) else f"{s}." for s in sentences)


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
        with initialize_config_dir(str(project_config_dir()), version_base="1.3"):
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
