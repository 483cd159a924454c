"""`resume=<run_dir>`: the run's own overrides put back on the command line before Hydra composes.

The run's `.hydra/overrides.yaml` + whatever is typed now (e.g. `trainer.max_epochs=30`, for this
attempt only), written into the same directory, checkpoints and loggers. This happens *before*
Hydra composes: Hydra would rewrite `.hydra/` before the task starts; here it is told not to, so
`.hydra/` keeps recording how the run was started.

`overrides.yaml` is data from a directory: it may set values and choose config groups, never
Hydra itself (by key or `@package`: `hydra.*` could add a search path or a callback), a location
(paths, directories, file names, endpoints: every path is re-derived inside the run directory), an
interpolation, nor `trusted_targets` (`expkit.checkpoints.stored_values.check_stored_overrides`: such a
line is refused in one line; the same key typed now replaces it). The targets it leads to are
checked after composing (`expkit.checkpoints.target_policy`). Only a training run can be resumed: the
directory of an eval, predict or export run is refused.
"""

import json
import re
from pathlib import Path

import yaml

from expkit.checkpoints.stored_values import check_stored_overrides
from expkit.errors import ConfigError

#: keys of the original run that a resume must not inherit: it picks its own checkpoint, directory
#: and trust
NOT_INHERITED = {"resume", "ckpt_path", "trusted_targets"}
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
_SAFE_VALUE = re.compile(r"^[\w./:@+-]+$")


def override_key(override: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).key_or_group
    except Exception:  # not valid Hydra syntax: Hydra itself will say so
        return override.split("=", 1)[0].lstrip("~+")


def _quoted(path: Path) -> str:
    text = str(path)
    return text if _SAFE_VALUE.match(text) else "'" + text.replace("'", "\\'") + "'"


def run_overrides(run_dir: Path) -> list[str]:
    """The task overrides the run was started with (Hydra's `.hydra/overrides.yaml`)."""
    path = run_dir / OVERRIDES_FILE
    _refuse_other_tasks(run_dir)
    if not path.is_file():
        raise ConfigError(
            f"resume={str(run_dir)!r} is not a run directory of this template (no {path} there). "
            "Allowed: a run directory such as logs/train/runs/<run> or "
            "logs/train/multiruns/<sweep>/<job>."
        )
    try:  # plain YAML: nothing in it is resolved
        stored = yaml.safe_load(path.read_text())
    except Exception as err:
        raise ConfigError(
            f"{path} is not readable YAML ({type(err).__name__}); cannot resume."
        ) from None
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise ConfigError(f"{path} is not a list of overrides (as Hydra writes it); cannot resume.")
    return [str(o) for o in stored]


def run_task(run_dir: Path) -> str | None:
    """The task that wrote `run_dir` (train, eval, …), from its results.json or saved config."""
    results = run_dir / "results.json"
    try:
        if results.is_file():
            task = json.loads(results.read_text()).get("task")
            if isinstance(task, str):
                return task
    except (OSError, ValueError, AttributeError):
        pass
    config = run_dir / ".hydra" / "config.yaml"
    try:
        if config.is_file():
            for line in config.read_text().splitlines():
                if line.startswith("task_name:"):
                    return str(yaml.safe_load(line).get("task_name"))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        pass
    return None


def _refuse_other_tasks(run_dir: Path) -> None:
    task = run_task(run_dir)
    if task not in (None, "train"):
        raise ConfigError(
            f"resume={str(run_dir)!r} is the directory of a run of {task}, not of a training run: "
            "only training runs continue. Allowed: a run directory of src/train.py "
            "(logs/train/runs/<run>)."
        )


def expand_resume_args(args: list[str]) -> list[str]:
    """`… resume=<run_dir> …` → the run's overrides, the ones typed now, and its directory.

    Arguments typed now win over the run's own (the run's entry for the same key is dropped).
    """
    tokens = [a for a in args if a.startswith("resume=")]
    if not tokens:
        return list(args)
    if len(tokens) > 1:
        raise ConfigError(f"resume= is given {len(tokens)} times ({tokens}); allowed: once.")
    value = tokens[0].split("=", 1)[1].strip("'\"")
    if value in ("", "null"):
        return list(args)
    if "-m" in args or "--multirun" in args:
        raise ConfigError(
            f"resume={value} continues one run; it cannot be combined with -m/--multirun. "
            "Allowed: resume one job directory (…/multiruns/<sweep>/<job>) at a time."
        )
    run_dirs = [a.split("=", 1)[1].strip("'\"") for a in args if a.startswith("hydra.run.dir=")]
    if run_dirs and "hydra.output_subdir=null" in args and _all_the_same_dir(run_dirs, value):
        # already expanded: a DDP rank started by Lightning reruns this command line, adding the
        # run's own hydra.run.dir (expkit/sweeps/ddp.py, Lightning's `_hydra_subprocess_cmd`)
        return list(args)
    if run_dirs:
        raise ConfigError(
            f"resume={value} writes into that run's own directory; drop hydra.run.dir=… "
            "(or drop resume= and pass ckpt_path=<file> to continue into a new directory)."
        )
    run_dir = Path(value).expanduser().resolve()
    typed = {override_key(a) for a in args if not a.startswith("-") and a is not tokens[0]}
    inherited = [o for o in run_overrides(run_dir) if override_key(o) not in typed | NOT_INHERITED]
    check_stored_overrides(inherited, run_dir / OVERRIDES_FILE)
    at = args.index(tokens[0])
    # output_subdir=null: Hydra leaves the run's .hydra/ (how it was started) as it is, so every
    # resume starts from the original overrides, and a rejected attempt changes nothing there
    expanded = [
        f"resume={_quoted(run_dir)}",
        f"hydra.run.dir={_quoted(run_dir)}",
        "hydra.output_subdir=null",
    ]
    return [*args[:at], *inherited, *expanded, *args[at + 1 :]]


def _all_the_same_dir(paths: list[str], run_dir: str) -> bool:
    target = Path(run_dir).expanduser().resolve()
    return all(Path(p).expanduser().resolve() == target for p in paths)


def resume_dir(args: list[str]) -> Path | None:
    """The run directory `resume=` names in expanded arguments, if any."""
    for arg in args:
        if arg.startswith("resume="):
            value = arg.split("=", 1)[1].strip("'\"")
            return Path(value).expanduser().resolve() if value not in ("", "null") else None
    return None
