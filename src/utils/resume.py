"""Continue a fit: by checkpoint (`ckpt_path=…`) or by run (`resume=<run_dir>`, a SLURM requeue).

- `ckpt_path=<file>`: the config typed now + the training state of that checkpoint, written into a
  new run directory (Lightning then keeps only `best_model_path` of the old run's ModelCheckpoint).
- `resume=<run_dir>`: the run's own overrides (its `.hydra/overrides.yaml`) + whatever is typed now
  (e.g. `trainer.max_epochs=30`, for this attempt only), written into the same directory,
  checkpoints and loggers, from the newest checkpoint there. The overrides are put on the command
  line *before* Hydra composes (Hydra would rewrite `.hydra/` before the task starts; here it is
  told not to, so `.hydra/` keeps recording how the run was started).
- A run started again in a directory that already holds its checkpoints (the same command after a
  SLURM requeue, with the run directory pinned) continues from the newest one rather than
  overwriting them; the newest is `checkpoints/last.ckpt` (end of an epoch), `checkpoints/
  interrupted.ckpt` (Ctrl+C, SIGTERM, a crash) or `hpc_ckpt_N.ckpt` (Lightning's SLURM signal).

Every checkpoint is loaded with `weights_only=True` and checked against the model before Lightning
touches it, so a foreign or truncated file fails with one message naming the mismatch.
"""

import re
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.utils.checkpoint import check_compatible, load_checkpoint
from src.utils.errors import ConfigError
from src.utils.logging_utils import get_logger

log = get_logger(__name__)

#: keys of the original run that a resume must not inherit: it picks its own checkpoint and directory
NOT_INHERITED = {"resume", "ckpt_path"}
_SAFE_VALUE = re.compile(r"^[\w./:@+-]+$")


def _key(override: str) -> str:
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
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise ConfigError(
            f"resume={str(run_dir)!r} is not a run directory of this template (no {path} there). "
            "Allowed: a run directory such as logs/train/runs/<run> or "
            "logs/train/multiruns/<sweep>/<job>."
        )
    return [str(o) for o in OmegaConf.load(path)]


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
    if any(a.startswith("hydra.run.dir=") for a in args):
        raise ConfigError(
            f"resume={value} writes into that run's own directory; drop hydra.run.dir=… "
            "(or drop resume= and pass ckpt_path=<file> to continue into a new directory)."
        )
    run_dir = Path(value).expanduser().resolve()
    typed = {_key(a) for a in args if not a.startswith("-") and a is not tokens[0]}
    inherited = [o for o in run_overrides(run_dir) if _key(o) not in typed | NOT_INHERITED]
    at = args.index(tokens[0])
    # output_subdir=null: Hydra leaves the run's .hydra/ (how it was started) as it is, so every
    # resume starts from the original overrides, and a rejected attempt changes nothing there
    expanded = [
        f"resume={_quoted(run_dir)}",
        f"hydra.run.dir={_quoted(run_dir)}",
        "hydra.output_subdir=null",
    ]
    return [*args[:at], *inherited, *expanded, *args[at + 1 :]]


def checkpoints_in_run(run_dir: str | Path) -> list[Path]:
    """The checkpoints a re-run of `run_dir` may continue from, newest first."""
    run_dir = Path(run_dir)
    found = [
        *(run_dir / "checkpoints").glob("last*.ckpt"),
        *(run_dir / "checkpoints").glob("interrupted.ckpt"),
        *run_dir.glob("hpc_ckpt_*.ckpt"),
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint `fit` continues from, or None to start afresh.

    Runs before the run writes anything: a rejected resume leaves the run directory as it was.
    The chosen file is loaded safely and checked against the model (built on the `meta` device:
    no memory, no random numbers drawn) and against `trainer.max_epochs`.
    """
    output_dir = Path(cfg.paths.output_dir).resolve()
    resume = cfg.get("resume")
    if resume and Path(resume).expanduser().resolve() != output_dir:
        raise ConfigError(
            f"resume={resume!r} continues that run in its own directory, but this run writes to "
            f"{output_dir}. Allowed: start it as `python src/train.py resume={resume}` "
            "(which sets hydra.run.dir), or pass ckpt_path=<file> to continue into a new directory."
        )
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
    else:
        found = checkpoints_in_run(output_dir)
        if not found:
            if resume:
                log.warning("resume=%s: no checkpoint there yet, training from the start.", resume)
            return None
        path = found[0]
    checkpoint = load_checkpoint(path)
    model = _model_on_meta_device(cfg)
    if model is not None:
        check_compatible(checkpoint, model, path, cfg)
    _check_epochs_left(checkpoint, path, cfg)
    log.info(
        "Resuming from %s (epoch %s, global step %s)%s",
        path,
        checkpoint.get("epoch"),
        checkpoint.get("global_step"),
        "" if cfg.get("ckpt_path") else ": the newest checkpoint in this run directory",
    )
    return str(path)


def _model_on_meta_device(cfg: DictConfig) -> torch.nn.Module | None:
    try:
        with torch.device("meta"):
            return instantiate(cfg.model, _convert_="all")
    except Exception as err:  # e.g. a net that reads weights from disk in __init__
        log.debug("Not checking the checkpoint against the model before fit: %s", err)
        return None


def _check_epochs_left(checkpoint: dict, path: Path, cfg: DictConfig) -> None:
    """Lightning refuses a checkpoint past `max_epochs`, but only after setting everything up."""
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    loops = checkpoint.get("loops") or {}
    progress = loops.get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    done = progress.get("completed")
    if max_epochs in (None, -1) or done is None or done <= max_epochs:
        return
    epoch = checkpoint.get("epoch", done)
    raise ConfigError(
        f"trainer.max_epochs={max_epochs} but {path} was saved in epoch {epoch} (counting from 0): "
        f"the run is already past it. Allowed: trainer.max_epochs >= {epoch + 1} "
        f"(e.g. trainer.max_epochs={epoch + 11} trains 10 more epochs), or -1."
    )
