"""k-fold cross-validation of a training run: `python src/train.py cv.folds=5`.

    <run_dir>/              the cross-validation: its lock, results.json (the means), config.yaml,
      cv_summary.csv/.md    mean ± std over the folds, and each fold's numbers
      fold_0/ … fold_4/     each a complete run: lock, results.json, checkpoints, history, log

Fold k is trained by the same task function as any run, with `cv.fold=k` (the datamodule then
validates on fold k of the training split and tests on the untouched test split) and
`paths.output_dir=<run_dir>/fold_k`. Its `.hydra/overrides.yaml` is the run's own plus `cv.fold=k`,
so `resume=<run_dir>/fold_k` can continue that fold alone. The folds run one after the other while
the cross-validation's directory stays locked; `-m cv.fold=0,1,2,3,4 cv.folds=5` runs them as
parallel jobs of a sweep instead (the sweep summary then averages them, `summary_folds.csv`).

- The returned metrics, and `metrics` in the run's results.json, are the means over the folds, so a
  sweep (Optuna included) ranks and optimizes the mean. The std and each fold's status are under
  `cv` in results.json.
- `resume=<run_dir>` reads completed folds back and runs only the others; a fold that was cut off
  continues from its newest checkpoint (a run re-run in its own directory always does).
- A fold that fails (an exception, a NaN loss) is recorded failed in its own results.json; the
  other folds still run, the summary covers the completed ones, and the cross-validation ends
  failed, naming the failed folds (a sweep records the job failed). An error in the inputs
  (raised before training), a full disk or an interruption (Ctrl+C, SIGTERM) stops at once.
- Under DDP every rank runs the same loop: the folds to run are read from disk by every rank before
  the first fold starts (none can complete before all ranks have joined its fit), only rank 0
  writes, and a failed fold ends the loop (Lightning stops the other ranks when a fit fails).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from expkit.checkpoints.resume import check_resume_dir
from expkit.cv.summary import CVSummary, Fold, fold_dir, read_fold, summarize, write_cv_summary
from expkit.errors import ConfigError, DiskFullError, RunError, TemplateError
from expkit.run.config_files import save_resolved_config
from expkit.run.lifecycle import open_run
from expkit.run.lock import is_rank_zero
from expkit.run.provenance import provenance_summary, write_provenance
from expkit.run.record import RunRecord
from expkit.run.resume_args import OVERRIDES_FILE, override_key
from expkit.run.summary import show_path
from expkit.run.validate import fetch_data_first
from expkit.sweeps.job import require_optimized_metric
from expkit.utils.atomic import atomic_write_text
from expkit.utils.logging_utils import get_logger
from expkit.utils.metric_names import stage_of

log = get_logger(__name__)

Task = Callable[[DictConfig], dict[str, float | str]]
Checks = Callable[[DictConfig, RunRecord], None]


class FoldsFailedError(TemplateError, RuntimeError):
    """Some folds of a cross-validation did not complete; the others are summarized."""

    before_training = False


def cross_validation(cfg: DictConfig) -> bool:
    """Whether `cfg` asks for every fold (`cv.folds` set, `cv.fold` null): this module's job.

    With `cv.fold=k` the run is one fold, an ordinary run (its datamodule follows `cv.fold`)."""
    cv = cfg.get("cv") or {}
    return cv.get("folds") is not None and cv.get("fold") is None


def fold_config(cfg: DictConfig, index: int) -> DictConfig:
    """The config of fold `index`: the run's own, in `<run_dir>/fold_<index>`, as `cv.fold=index`."""
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.cv.fold = index
        fold_cfg.paths.output_dir = str(fold_dir(cfg.paths.output_dir, index))
        fold_cfg.resume = None  # a fold re-run in its own directory continues from its checkpoint
    return fold_cfg


def check_folds_fit_the_data(cfg: DictConfig) -> None:
    """Build fold 0's data once, so a dataset that cannot be split into `cv.folds` folds (a class
    smaller than that, a wrong input shape) is one line before any fold directory is written."""
    datamodule = instantiate(fold_config(cfg, 0).data, _convert_="all")
    fetch_data_first(datamodule)
    datamodule.setup("fit")


def check_folds_on_disk(cfg: DictConfig) -> None:
    """A re-run (`resume=`) must split the data as the folds already there were split: the same
    `cv.folds` and `cv.seed`, or completed folds of one split would be averaged with another's."""
    run_dir, folds, seed = Path(cfg.paths.output_dir), cfg.cv.folds, cfg.cv.seed
    for path in sorted(run_dir.glob("fold_*/config.yaml")):
        try:
            saved = OmegaConf.to_container(OmegaConf.load(path))
        except Exception:  # unreadable: its results.json decides (a fold without one runs again)
            continue
        stored = saved.get("cv") if isinstance(saved, dict) else None
        if not isinstance(stored, dict):
            continue
        if (stored.get("folds"), stored.get("seed")) != (folds, seed):
            raise ConfigError(
                f"cv.folds={folds} cv.seed={seed}, but {path.parent} is a fold of cv.folds="
                f"{stored.get('folds')} cv.seed={stored.get('seed')}: its folds would not match. "
                f"Allowed: cv.folds={stored.get('folds')} cv.seed={stored.get('seed')} for this run "
                "directory, or a new run."
            )


def _write_fold_overrides(run_dir: Path, index: int) -> None:
    """`fold_k/.hydra/overrides.yaml`: the run's overrides plus `cv.fold=k` (written once)."""
    source, target = run_dir / OVERRIDES_FILE, fold_dir(run_dir, index) / OVERRIDES_FILE
    if not is_rank_zero() or not source.is_file() or target.exists():
        return
    stored = yaml.safe_load(source.read_text())  # plain YAML: an interpolation stays text
    overrides = [str(o) for o in stored] if isinstance(stored, list) else []
    kept = [o for o in overrides if override_key(o).lstrip("~+") not in ("cv.fold", "resume")]
    atomic_write_text(target, OmegaConf.to_yaml([*kept, f"cv.fold={index}"]))


@contextmanager
def _fold_log(directory: Path, task: str) -> Iterator[None]:
    """The fold's own `<task>.log` while it runs (the run's log gets every line too)."""
    if not is_rank_zero():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(directory / f"{task}.log")
    like = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    handler.setFormatter(
        like.formatter
        if like and like.formatter
        else logging.Formatter("[%(asctime)s] %(message)s")
    )
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _run_fold(cfg: DictConfig, index: int, train_run: Task) -> Fold:
    """Train fold `index`; a failure that is not the inputs' fault is recorded, not raised."""
    fold_cfg = fold_config(cfg, index)
    where = Path(fold_cfg.paths.output_dir)
    log.info("Cross-validation: fold %d of %d in %s", index, cfg.cv.folds, show_path(where))
    _write_fold_overrides(Path(cfg.paths.output_dir), index)
    with _fold_log(where, str(cfg.get("task_name") or "train")):
        try:
            metrics = train_run(fold_cfg)
        except Exception as exc:
            if (isinstance(exc, RunError) and exc.before_training) or isinstance(
                exc, DiskFullError
            ):
                raise  # the inputs are wrong, or the disk is full: every fold would fail so
            trace = not isinstance(exc, TemplateError)  # ours say it all in one line
            log.error("Fold %d failed: %s: %s", index, type(exc).__name__, exc, exc_info=trace)
            fold = Fold(index, where, "failed", error=f"{type(exc).__name__}: {exc}")
        except BaseException:  # Ctrl+C, SIGTERM: the whole cross-validation stops here
            run_dir = show_path(cfg.paths.output_dir)
            log.warning(
                "Cross-validation stopped in fold %d: continue every fold not completed with "
                "`python src/train.py resume=%s`.",
                index,
                run_dir,
            )
            raise
        else:
            fold = Fold(index, where, "completed", {k: float(v) for k, v in metrics.items()})
    return read_fold(cfg.paths.output_dir, index) if is_rank_zero() else fold


def _summary_rows(summary: CVSummary, metric: str | None) -> list[tuple[str, str]]:
    shown = [m for m in summary.mean if m == metric or stage_of(m) == "test"][:6]
    rows = [
        (name, f"{summary.mean[name]:.4f} ± {summary.std[name]:.4f} (mean ± std)") for name in shown
    ]
    folds = summary.folds
    rows.append(("folds", f"{len(summary.completed)} of {len(folds)} completed"))
    rows += [(f"fold {f.index}", f"{f.status}: {f.error or 'not run'}") for f in summary.unfinished]
    rows += [(f"cv {name}", show_path(path)) for name, path in summary.files.items()]
    return rows


def cross_validate(
    cfg: DictConfig, train_run: Task, check_inputs: Checks
) -> dict[str, float | str]:
    """Run every fold of `cfg.cv.folds` (those not completed yet), summarize, return the means."""
    run_dir = Path(cfg.paths.output_dir)
    folds, metric = int(cfg.cv.folds), cfg.get("optimized_metric")
    with open_run("train", cfg) as record:
        check_inputs(cfg, record)
        check_resume_dir(cfg)
        check_folds_on_disk(cfg)
        check_folds_fit_the_data(cfg)
        record.extra["provenance"] = provenance_summary(write_provenance(run_dir))
        save_resolved_config(cfg, run_dir)
        results = {k: read_fold(run_dir, k) for k in range(folds)}
        pending = [k for k, fold in results.items() if not fold.completed]
        if len(pending) < folds:
            done = sorted(set(results) - set(pending))
            log.info("Cross-validation: folds %s completed already, read back", done)
        for index in pending:
            results[index] = _run_fold(cfg, index, train_run)
            if not results[index].completed and _distributed():
                break  # the failed fit took the other ranks down: no later fold can run
        summary = summarize([results[k] for k in range(folds)], metric)
        if is_rank_zero():
            write_cv_summary(run_dir, summary, f"Cross-validation: {folds} folds")
        record.add_metrics(summary.mean)
        record.extra["cv"] = {
            "folds": folds,
            "seed": cfg.cv.seed,
            "completed": len(summary.completed),
            "std": {k: v if v == v else "nan" for k, v in summary.std.items()},
            "fold_status": {f"fold_{f.index}": f.status for f in summary.folds},
        }
        record.summary_rows = _summary_rows(summary, metric)
        if summary.unfinished:
            failed = "; ".join(
                f"fold {f.index} {f.status}: {f.error}" if f.error else f"fold {f.index} not run"
                for f in summary.unfinished
            )
            raise FoldsFailedError(
                f"Cross-validation: {len(summary.unfinished)} of {folds} folds did not complete "
                f"({failed}). cv_summary.md covers the {len(summary.completed)} completed. "
                f"Run the others: python src/train.py resume={show_path(run_dir)}"
            )
        require_optimized_metric(cfg.get("optimized_metric"), record.metrics)
    return record.metrics
