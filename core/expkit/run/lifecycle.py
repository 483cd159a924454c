"""The life of one run, whatever the task (train, eval, predict, export): the part they all share.

    with open_run("eval", cfg) as record:   # lock the run directory, start the clock
        ...                                 # the task's own body fills `record`
    # results.json written (completed / failed / interrupted), the summary printed

- One writer per run directory (`expkit.run.lock`): a second process exits at once, touching nothing.
- `results.json` is written however the run ends. A re-run of an existing run directory that is
  rejected before training (`before_training` errors) leaves that run's results.json as it was
  (or absent).
- After SIGTERM the process exits 143 (128 + SIGTERM), not the 0 of Lightning's bare `SystemExit`,
  so a scheduler or shell sees that the run did not finish.
- A full disk ends in one line naming the file and the newest checkpoint that is still whole.
- A SLURM time limit or pre-emption handled by submitit (it requeues the job, then `sys.exit(-1)`)
  is `interrupted`, not `failed`: the run waits for its next attempt.
- Every attempt on one run directory (`resume=`, a requeue) counts: `attempts` and
  `total_wall_time_s` add up what the earlier attempts recorded.
- A job of `hydra/launcher=gpu_pool` records the GPU it ran on (`gpu`: index, slot, name).
"""

from __future__ import annotations

import errno
import os
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from expkit.errors import DiskFullError, RunError, user_error
from expkit.run.lock import is_rank_zero, run_dir_lock
from expkit.run.record import RESULTS_FILE, RunRecord
from expkit.run.summary import log_summary, summary_text
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)


def _interruption(exc: BaseException) -> str | None:
    """'Ctrl+C' or 'SIGTERM' when `exc` is how Lightning passes one on, else None.

    Lightning turns Ctrl+C during `fit` into `sys.exit(1)` (raised while handling the
    KeyboardInterrupt) and SIGTERM into `SIGTERMException`, a `SystemExit` with no code; a run
    nested in another (a fold of a cross-validation) passes SIGTERM on as `SystemExit(143)`.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    if isinstance(exc, SIGTERMException) or (
        isinstance(exc, SystemExit) and isinstance(exc.__cause__, SIGTERMException)
    ):
        return "SIGTERM"
    if isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)
    ):
        return "Ctrl+C"
    if _requeued_by_submitit(exc):
        return "SLURM (time limit or pre-emption; the job is requeued)"
    return None


def _requeued_by_submitit(exc: BaseException) -> bool:
    """`exc` is the `sys.exit(-1)` submitit raises after it requeued the job on its signal.

    Recognised by where it was raised (submitit's signal handler), not by the exit code alone.
    """
    if not isinstance(exc, SystemExit) or exc.code != -1:
        return False
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_exit" and Path(code.co_filename).match("submitit/core/*.py"):
            return True
        tb = tb.tb_next
    return False


def _earlier_attempts(record: RunRecord) -> tuple[int, float]:
    """Attempts and wall time the run directory's results.json recorded before this attempt."""
    if not record.path.is_file():
        return 0, 0.0
    try:
        previous = RunRecord.read(record.path)
        attempts = int(previous.attempts or 1)
        total = float(previous.total_wall_time_s or previous.wall_time_s or 0.0)
    except (OSError, ValueError, TypeError) as err:
        log.warning("Earlier attempts not counted: %s is unreadable (%s).", record.path, err)
        return 0, 0.0
    return attempts, total


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC error behind `exc` (libraries wrap it), if that is what happened."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        if "No space left on device" in str(current):
            return OSError(errno.ENOSPC, "No space left on device", None)
        current = current.__cause__ or current.__context__
    return None


def _disk_full_error(err: OSError, output_dir: Path, task: str = "train") -> DiskFullError:
    from expkit.checkpoints.resume import newest_whole_checkpoint

    where = f" while writing {err.filename}" if err.filename else ""
    if task != "train":  # eval, predict, export: nothing to resume, nothing half-written kept
        return DiskFullError(
            f"No space left on device{where}; nothing half-written was kept. Free some space, "
            f"then run src/{task}.py again."
        )
    newest = newest_whole_checkpoint(output_dir)
    keep = (
        f"Newest good checkpoint: {newest}; free some space, then continue with "
        f"`python src/train.py resume={output_dir}`."
        if newest
        else "No checkpoint was written before it."
    )
    return DiskFullError(f"No space left on device{where}. {keep}")


def _error_info(exc: BaseException, interruption: str | None) -> dict[str, str]:
    return {
        "type": type(exc).__name__,
        "message": f"interrupted by {interruption}" if interruption else str(exc),
        "traceback": traceback.format_exc(limit=20),
    }


def _write(record: RunRecord, keep_previous: bool) -> None:
    if not is_rank_zero():
        return
    if keep_previous:
        log.warning("Rejected before training: %s of this run left as it was.", RESULTS_FILE)
        return
    try:
        record.write()
    except OSError as err:  # a full disk: the previous results.json (if any) is intact
        log.error("Could not write %s: %s", record.path, err)


def _pool_gpu() -> dict[str, Any] | None:
    """The GPU of a `hydra/launcher=gpu_pool` job; the pool's side is imported only for its jobs."""
    if "GPU_POOL_GPU" not in os.environ:  # expkit.run.gpu_slot.ENV_GPU (a test keeps them equal)
        return None
    from expkit.run.gpu_slot import pool_gpu

    return pool_gpu()


@contextmanager
def open_run(task: str, cfg: DictConfig, model_path: str | None = None) -> Iterator[RunRecord]:
    """Lock `cfg.paths.output_dir`, time the block, write results.json, print the summary.

    `model_path`: the checkpoint a task runs (eval, predict, export), recorded as its model.
    """
    output_dir = Path(cfg.paths.output_dir)
    with run_dir_lock(output_dir):
        record = RunRecord(task=task, output_dir=str(output_dir), best_model_path=model_path)
        record.started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        earlier_attempts, earlier_wall_time = _earlier_attempts(record)
        record.attempts = earlier_attempts + 1
        gpu = _pool_gpu()
        if gpu is not None:
            log.info("GPU pool: this job runs on GPU %s (slot %s)", gpu["index"], gpu["slot"])
        t0 = time.perf_counter()
        keep_previous = False
        try:
            yield record
            record.status = "completed"
        except BaseException as raised:
            # a resolver's user error (`${folder_classes:…}`) comes wrapped by OmegaConf: unwrap it
            exc = user_error(raised) or raised
            # a rejected re-run of an existing run (resume=, a requeue) leaves it as it was
            existing_run = record.path.is_file() or bool(cfg.get("resume"))
            stop = exc if isinstance(exc, RunError) else RunError()  # the contract's defaults
            keep_previous = stop.before_training and existing_run
            interruption = _interruption(exc)
            record.status = stop.status or ("interrupted" if interruption else "failed")
            # what the run keeps (a pruned trial: the metrics and epochs it reached)
            record.add_metrics(stop.run_metrics)
            record.extra.update(stop.run_record)
            full = _disk_full(exc)
            if full is not None:  # a nested run's (a fold's) own message names its checkpoint
                error = (
                    exc
                    if isinstance(exc, DiskFullError)
                    else _disk_full_error(full, output_dir, task)
                )
                record.error = _error_info(error, None)
                raise error from None
            record.error = _error_info(exc, interruption)
            if interruption == "SIGTERM":
                raise SystemExit(128 + signal.SIGTERM) from exc
            if exc is not raised:
                raise exc from None
            raise
        finally:
            record.wall_time_s = round(time.perf_counter() - t0, 3)
            record.total_wall_time_s = round(earlier_wall_time + record.wall_time_s, 3)
            if gpu is not None:
                record.extra["gpu"] = _pool_gpu()  # now with the GPU's name, if the job used it
            _write(record, keep_previous)
    log_summary(summary_text(record))
