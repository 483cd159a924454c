"""Continue a fit: from `ckpt_path=<file>` (into a new run directory) or from the newest good
checkpoint of the run's own directory (`resume=<run_dir>`, a SLURM requeue, a re-run in place).

The newest checkpoint is `checkpoints/last.ckpt` (end of an epoch), `checkpoints/interrupted.ckpt`
(Ctrl+C, SIGTERM, a crash), `hpc_ckpt_N.ckpt` (Lightning's SLURM signal) or, failing those, the best
`epoch_NNN.ckpt`. A candidate that does not load (truncated by a full disk before writes were
atomic, damaged, foreign) is skipped with its reason logged, and the next newest is used; so is one
that is not a regular file (a directory, a FIFO: never opened, so never waited on) or a symlink
that leads out of the run directory.

Every checkpoint is loaded with `weights_only=True` and checked against the model before Lightning
touches it, so a foreign or truncated file fails with one message naming the mismatch. The paths
its callback states carry are kept inside the run by `expkit.callbacks.restored_state`.
"""

import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from expkit.checkpoints.load import load_checkpoint
from expkit.checkpoints.verify import check_compatible
from expkit.errors import CheckpointError, ConfigError
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


def checkpoints_in_run(run_dir: str | Path, include_best: bool = False) -> list[Path]:
    """The checkpoints a re-run of `run_dir` may continue from, newest first (best ones last)."""
    run_dir = Path(run_dir)
    found = [
        *(run_dir / "checkpoints").glob("last*.ckpt"),
        *(run_dir / "checkpoints").glob("interrupted.ckpt"),
        *run_dir.glob("hpc_ckpt_*.ckpt"),
    ]
    newest = sorted(found, key=_mtime, reverse=True)
    if not include_best:
        return newest
    best = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    return newest + sorted(best, key=_mtime, reverse=True)


def _mtime(path: Path) -> int:
    try:
        return os.lstat(path).st_mtime_ns
    except OSError:
        return 0


def not_a_checkpoint_file(path: Path, run_dir: Path) -> str | None:
    """Why `path` cannot be a checkpoint of `run_dir` without opening it (None when it can)."""
    try:
        link = os.lstat(path)
        target = path.resolve()
        mode = os.stat(path).st_mode
    except (OSError, RuntimeError) as err:  # dangling or looping symlink, gone
        return f"cannot be read ({type(err).__name__})"
    root = run_dir.resolve()
    if stat.S_ISLNK(link.st_mode) and root not in target.parents:
        return f"a symlink out of the run directory (to {target})"
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, a device…)"
        return f"{kind}, not a checkpoint file"
    return None


def remove_requeue_checkpoints(run_dir: str | Path) -> list[Path]:
    """After a completed fit, delete the `hpc_ckpt_N.ckpt` of a SLURM requeue; return them.

    Lightning saves one on its SLURM signal and loads it on restart, but never deletes it: left
    behind it costs a checkpoint's disk and looks like the run's state. (`interrupted.ckpt` is
    deleted by Lightning's own OnExceptionCheckpoint once the fit completes.)
    """
    leftovers = sorted(Path(run_dir).glob("hpc_ckpt_*.ckpt"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("Fit completed: removed %s.", ", ".join(p.name for p in leftovers))
    return leftovers


def newest_whole_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of `run_dir` that is a complete zip (what a failed write spares)."""
    candidates = checkpoints_in_run(run_dir, include_best=True)
    return next(
        (
            p
            for p in candidates
            if not_a_checkpoint_file(p, Path(run_dir)) is None and zipfile.is_zipfile(p)
        ),
        None,
    )


def best_checkpoint(trainer: Any) -> str | None:
    """The best checkpoint of this fit, found in this run's own checkpoint directory.

    After resuming a run directory that was moved or copied, Lightning restores the best path as
    it was stored (the old location): the file of that name in this run is the one meant.
    """
    callback = trainer.checkpoint_callback
    stored = getattr(callback, "best_model_path", "") or ""
    if not stored:
        return None
    here = Path(callback.dirpath or ".") / Path(stored).name
    if Path(stored).resolve() != here.resolve() and here.is_file():
        return str(here)
    return stored if Path(stored).is_file() else None


def check_resume_dir(cfg: DictConfig) -> Path:
    """This run's directory, which `resume=` (when set) must name: a run continues in its own."""
    output_dir = Path(cfg.paths.output_dir).resolve()
    resume = cfg.get("resume")
    if resume and Path(resume).expanduser().resolve() != output_dir:
        raise ConfigError(
            f"resume={resume!r} continues that run in its own directory, but this run writes to "
            f"{output_dir}. Allowed: start it as `python src/train.py resume={resume}` "
            "(which sets hydra.run.dir), or pass ckpt_path=<file> to continue into a new directory."
        )
    return output_dir


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint `fit` continues from, or None to start afresh.

    Runs before the run writes anything: a rejected resume leaves the run directory as it was.
    The chosen file is loaded safely and checked against the model (built on the `meta` device:
    no memory, no random numbers drawn) and against `trainer.max_epochs`.
    """
    output_dir = check_resume_dir(cfg)
    model = _model_on_meta_device(cfg)
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        checkpoint = _checked(path, cfg, model, run_dir=None)
    else:
        found = _newest_usable(output_dir, cfg, model)
        if found is None:
            return None
        path, checkpoint = found
    log.info(
        "Resuming from %s (epoch %s, global step %s)%s",
        path,
        checkpoint.get("epoch"),
        checkpoint.get("global_step"),
        "" if cfg.get("ckpt_path") else ": the newest good checkpoint in this run directory",
    )
    return str(path)


def first_step_to_log(path: str | Path | None) -> int:
    """The first global step a fit resumed from `path` logs at (0 for none: from the start).

    What loggers hold from that step on is replaced by what the resumed fit logs (see
    expkit/loggers/continued.py). A checkpoint taken at the end of an epoch, at global step G: the
    next epoch logs its first values (the learning rate) at step G, so G. One taken within an
    epoch (`interrupted.ckpt`, `hpc_ckpt_N.ckpt`: the loop's epoch was started, not processed):
    Lightning continues that epoch without running its start hooks again, so what was logged at
    step G before the interruption stays, and the fit logs from G + 1.
    """
    if path is None:
        return 0
    checkpoint = load_checkpoint(path)
    step = checkpoint.get("global_step", 0)
    step = int(step) if isinstance(step, int | float) else 0
    loops = checkpoint.get("loops") or {}
    progress = loops.get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    within_epoch = progress.get("started", 0) > progress.get("processed", 0)
    return step + 1 if within_epoch else step


def _checked(
    path: Path, cfg: DictConfig, model: torch.nn.Module | None, run_dir: Path | None
) -> dict[str, Any]:
    if run_dir is not None:
        why = not_a_checkpoint_file(path, run_dir)
        if why:
            raise CheckpointError(f"{path} is {why}")
    checkpoint = load_checkpoint(path)
    if model is not None:
        check_compatible(checkpoint, model, path, cfg)
    _check_epochs_left(checkpoint, path, cfg)
    return checkpoint


def _newest_usable(
    run_dir: Path, cfg: DictConfig, model: torch.nn.Module | None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest candidate that loads and fits; each skipped one is logged with its reason."""
    candidates = checkpoints_in_run(run_dir, include_best=True)
    if not candidates:
        if cfg.get("resume"):
            log.warning("resume=%s: no checkpoint there yet, training from the start.", run_dir)
        return None
    skipped = []
    for path in candidates:
        try:
            return path, _checked(path, cfg, model, run_dir)
        except CheckpointError as err:
            skipped.append(f"{path.name} ({err})")
            log.warning("Not resuming from %s: %s", path, err)
    raise CheckpointError(
        f"No checkpoint in {run_dir} can be resumed from; skipped: {'; '.join(skipped)}. "
        "Allowed: a run directory holding a checkpoint written by src/train.py for this model."
    )


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
