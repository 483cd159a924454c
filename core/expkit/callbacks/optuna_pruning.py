"""Optuna pruning inside a sweep job: report the monitored metric to the job's trial after every
validation, and stop the run when the study's pruner says the trial is not promising.

What Optuna's `PyTorchLightningPruningCallback` does (report, ask the pruner; it now lives in the
separate optuna-integration package), on Optuna's public trial API, plus what a job of a Hydra
sweep needs around it:
- the trial is found from the job's config: `optuna_trial=<number>` (added by the sweeper, see
  `hydra_plugins/expkit_optuna_sweeper`), the study name, storage and pruner from the sweeper's
  config (`hydra.sweeper`), so the job reaches the study through its storage (an sqlite file);
- the sanity check's validation is not reported (it would take the real epoch 0's place);
- under DDP only rank 0 talks to the study and every rank stops at the same epoch (one broadcast);
- a pruned run raises `TrialPruned` (an `optuna.TrialPruned`) that carries the epoch and the
  metrics it reached, with a log line naming what the value was compared against; the sweeper
  stores the trial PRUNED and the run's results.json says `status: pruned`.
Without `optuna_trial` (a plain run) or without a pruner, it does nothing.
"""

import math

import numpy as np
import optuna
import pytorch_lightning as pl
from optuna.pruners import PercentilePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from expkit.errors import ConfigError, RunError
from expkit.utils.logging_utils import get_logger
from expkit.utils.metric_names import epoch_values
from hydra_plugins.expkit_optuna_sweeper._pruners import make_pruner

log = get_logger(__name__)

DIRECTIONS = {"max": StudyDirection.MAXIMIZE, "min": StudyDirection.MINIMIZE}


class TrialPruned(optuna.TrialPruned, RunError):
    """The run was stopped by the study's pruner at `epoch` (counting from 0).

    As a `RunError` it tells `open_run` what to write in results.json: `status: pruned`, the
    metrics at that epoch, the epoch and the number of epochs trained.
    """

    status = "pruned"

    def __init__(self, message: str, epoch: int, metrics: dict[str, float]) -> None:
        super().__init__(message)
        self.epoch, self.run_metrics = epoch, metrics
        self.run_record = {"pruned_at_epoch": epoch, "epochs": epoch + 1}

    def __reduce__(self) -> tuple:  # a joblib or submitit worker sends it back to the sweeper
        return type(self), (self.args[0], self.epoch, self.run_metrics)


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str, mode: str = "max", trial: int | None = None) -> None:
        """`monitor`/`mode`: the metric reported (`monitor.metric`/`monitor.mode`); `trial`: the
        number of this job's trial in the study (`optuna_trial`, set by the sweeper), or None."""
        if mode not in DIRECTIONS:
            raise ConfigError(f"monitor.mode={mode!r} is not allowed. Allowed: max, min.")
        self.monitor, self.mode, self.trial_number = monitor, mode, trial
        self.enabled = False  # the same on every rank: whether ranks meet after each validation
        self._study: optuna.Study | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.trial_number is None:
            return
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            log.warning("optuna_trial=%s outside a Hydra sweep: not reporting.", self.trial_number)
            return
        sweeper = HydraConfig.get().sweeper
        pruner = make_pruner(sweeper.get("pruner"))
        if pruner is None:
            return
        self.enabled = True
        if trainer.is_global_zero:
            self._open_trial(sweeper.study_name, sweeper.storage, pruner)

    def _open_trial(self, study_name: str, storage: str, pruner: optuna.pruners.BasePruner) -> None:
        backend = optuna.storages.RDBStorage(storage) if isinstance(storage, str) else storage
        study = optuna.load_study(study_name=study_name, storage=backend, pruner=pruner)
        if study.direction != DIRECTIONS[self.mode]:
            raise ConfigError(
                f"monitor.mode={self.mode} but study {study_name!r} is "
                f"{study.direction.name.lower()}d: the pruner would keep the worst trials. "
                f"Allowed: monitor.mode={'max' if study.direction.name == 'MAXIMIZE' else 'min'} "
                f"or a study with hydra.sweeper.direction to match."
            )
        study_id = backend.get_study_id_from_name(study.study_name)
        try:
            trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        except KeyError:
            raise ConfigError(
                f"optuna_trial={self.trial_number} is not a trial of study {study_name!r} in "
                f"{storage}. Allowed: a trial the sweeper created (it sets optuna_trial itself)."
            ) from None
        state = backend.get_trial(trial_id).state
        if state != TrialState.RUNNING:
            log.warning(
                "Trial %d of study %r is %s already (a rerun of its job?): not reporting to it.",
                self.trial_number,
                study_name,
                state.name,
            )
            return
        self._study, self._trial = study, optuna.trial.Trial(study, trial_id)
        self._backend, self._trial_id = backend, trial_id
        log.info(
            "Reporting %s to trial %d of study %r after every epoch (pruner: %s).",
            self.monitor,
            self.trial_number,
            study_name,
            type(pruner).__name__,
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        verdict = None
        if trainer.is_global_zero and self._study is not None and self._report(trainer):
            verdict = self._explain(trainer.current_epoch)
        if trainer.world_size > 1:
            verdict = trainer.strategy.broadcast(verdict, src=0)
        if verdict is None:
            return
        if trainer.is_global_zero:
            log.info(verdict)
        metrics = {k: float(v) for k, v in epoch_values(trainer.callback_metrics).items()}
        raise TrialPruned(verdict, trainer.current_epoch, metrics)

    def _report(self, trainer: pl.Trainer) -> bool:
        """Report this epoch's value to the trial; whether the pruner says to stop."""
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            log.warning("%s was not logged this epoch: not reported to the study.", self.monitor)
            return False
        self._trial.report(float(score), step=trainer.current_epoch)
        return self._trial.should_prune()

    def _explain(self, epoch: int) -> str:
        """'Trial 7 pruned at epoch 2: val/acc = 0.81 ... median 0.85 of 4 completed trials ...'"""
        study = self._study
        trials = study.get_trials(deepcopy=False)
        me = self._backend.get_trial(self._trial_id)
        value = me.intermediate_values.get(epoch, math.nan)
        pruner, direction = study.pruner, study.direction
        head = f"Trial {self.trial_number} pruned at epoch {epoch}: {self.monitor}={value:.4f}"
        if isinstance(pruner, PercentilePruner):  # MedianPruner is one, with percentile 50
            # the pruner's own percentile (it has no public accessor; 50 is the median's)
            percentile = float(getattr(pruner, "_percentile", 50.0))
            best = _best_so_far(me, direction)
            done = [
                t
                for t in trials
                if t.state == TrialState.COMPLETE and epoch in t.intermediate_values
            ]
            bar = _percentile_at(done, direction, epoch, percentile)
            which = (
                "median"
                if percentile == 50
                else f"{percentile:g}th percentile ({'top' if direction.name == 'MAXIMIZE' else 'bottom'})"
            )
            return (
                f"{head} (best so far {best:.4f}) is worse than the {which} {bar:.4f} of the "
                f"{len(done)} completed trials at that epoch ({type(pruner).__name__})."
            )
        others = [
            t.intermediate_values[epoch]
            for t in trials
            if t.number != me.number
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            and epoch in t.intermediate_values
        ]
        if not others:
            return f"{head} ({type(pruner).__name__}; no other trial reached that epoch yet)."
        ordered = sorted(others, reverse=direction.name == "MAXIMIZE")
        return (
            f"{head}: {type(pruner).__name__} keeps only the best of the trials that reached it "
            f"(other trials at that epoch: best {ordered[0]:.4f}, median "
            f"{ordered[len(ordered) // 2]:.4f}, {len(others)} trials)."
        )


def _best_so_far(trial: FrozenTrial, direction: StudyDirection) -> float:
    """The trial's best reported value (what PercentilePruner compares)."""
    values = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if direction == StudyDirection.MAXIMIZE else min(values)


def _percentile_at(
    trials: list[FrozenTrial], direction: StudyDirection, step: int, percentile: float
) -> float:
    """The value PercentilePruner compares against at `step`: the `percentile` of the completed
    trials' values there (from the top when maximizing)."""
    values = [t.intermediate_values[step] for t in trials]
    if not values:
        return math.nan
    if direction == StudyDirection.MAXIMIZE:
        percentile = 100 - percentile
    return float(np.nanpercentile(np.array(values, dtype=float), percentile))
