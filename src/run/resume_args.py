"""`resume=<run_dir>`: the run's own overrides put back on the command line before Hydra composes.

The run's `.hydra/overrides.yaml` + whatever is typed now (e.g. `trainer.max_epochs=30`, for this
attempt only), written into the same directory, checkpoints and loggers. This happens *before*
Hydra composes: Hydra would rewrite `.hydra/` before the task starts; here it is told not to, so
`.hydra/` keeps recording how the run was started.

`overrides.yaml` is data from a directory: it may set values, never Hydra itself (`hydra.*` could
add a search path or a callback) nor `trusted_targets`; the targets it leads to are checked after
composing (`src.checkpoints.target_policy`).
"""

import re
from pathlib import Path

from omegaconf import OmegaConf

from src.utils.errors import ConfigError

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
    if not path.is_file():
        raise ConfigError(
            f"resume={str(run_dir)!r} is not a run directory of this template (no {path} there). "
            "Allowed: a run directory such as logs/train/runs/<run> or "
            "logs/train/multiruns/<sweep>/<job>."
        )
    try:
        stored = OmegaConf.load(path)
    except Exception as err:
        raise ConfigError(
            f"{path} is not readable YAML ({type(err).__name__}); cannot resume."
        ) from None
    if not OmegaConf.is_list(stored) or not all(isinstance(o, str) for o in stored):
        raise ConfigError(f"{path} is not a list of overrides (as Hydra writes it); cannot resume.")
    overrides = [str(o) for o in stored]
    for override in overrides:
        if override_key(override).lstrip("~+").split(".", 1)[0].split("/", 1)[0] == "hydra":
            raise ConfigError(
                f"{path} holds {override!r}: a run directory may set values of the run, never "
                "Hydra's own settings. Allowed: remove that line, or type it yourself."
            )
    return overrides


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
        # run's own hydra.run.dir (src/sweeps/ddp.py, Lightning's `_hydra_subprocess_cmd`)
        return list(args)
    if run_dirs:
        raise ConfigError(
            f"resume={value} writes into that run's own directory; drop hydra.run.dir=… "
            "(or drop resume= and pass ckpt_path=<file> to continue into a new directory)."
        )
    run_dir = Path(value).expanduser().resolve()
    typed = {override_key(a) for a in args if not a.startswith("-") and a is not tokens[0]}
    inherited = [o for o in run_overrides(run_dir) if override_key(o) not in typed | NOT_INHERITED]
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
