"""Optuna pruning inside a sweep job: report the monitored metric to the job's trial after every
validation, and stop the run when the study's pruner says the trial is not promising.

Optuna's own `PyTorchLightningPruningCallback` reports and asks the pruner; this subclass adds
what a job of a Hydra sweep needs around it:
- the trial is found from the job's config: `optuna_trial=<number>` (added by the sweeper, see
  `hydra_plugins/resumable_optuna_sweeper`), the study name, storage and pruner from the sweeper's
  config (`hydra.sweeper`), so the job reaches the study through its storage (an sqlite file);
- the sanity check's validation is not reported (Optuna 2.10's callback reports it as epoch 0, and
  the real epoch 0 value is then ignored as a duplicate);
- under DDP only rank 0 talks to the study and every rank stops at the same epoch (one broadcast);
- a pruned run raises `TrialPruned` (an `optuna.TrialPruned`) that carries the epoch and the
  metrics it reached, with a log line naming what the value was compared against; the sweeper
  stores the trial PRUNED and the run's results.json says `status: pruned`.
Without `optuna_trial` (a plain run) or without a pruner, it does nothing.
"""

import math

import optuna
import pytorch_lightning as pl
from optuna.integration import PyTorchLightningPruningCallback
from optuna.pruners import PercentilePruner
from optuna.pruners._percentile import (
    _get_best_intermediate_result_over_steps,
    _get_percentile_intermediate_result_over_trials,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hydra_plugins.resumable_optuna_sweeper._pruners import make_pruner
from src.utils.errors import ConfigError
from src.utils.logging_utils import get_logger
from src.utils.metric_names import epoch_values

log = get_logger(__name__)

DIRECTIONS = {"max": StudyDirection.MAXIMIZE, "min": StudyDirection.MINIMIZE}


class TrialPruned(optuna.TrialPruned):
    """The run was stopped by the study's pruner at `epoch` (counting from 0).

    `status`, `run_metrics` and `run_record` tell `open_run` what to write in results.json:
    `status: pruned`, the metrics at that epoch, the epoch and the number of epochs trained.
    """

    status = "pruned"

    def __init__(self, message: str, epoch: int, metrics: dict[str, float]) -> None:
        super().__init__(message)
        self.epoch, self.run_metrics = epoch, metrics
        self.run_record = {"pruned_at_epoch": epoch, "epochs": epoch + 1}

    def __reduce__(self) -> tuple:  # a joblib or submitit worker sends it back to the sweeper
        return type(self), (self.args[0], self.epoch, self.run_metrics)


class OptunaPruning(PyTorchLightningPruningCallback):
    def __init__(self, monitor: str, mode: str = "max", trial: int | None = None) -> None:
        """`monitor`/`mode`: the metric reported (`monitor.metric`/`monitor.mode`); `trial`: the
        number of this job's trial in the study (`optuna_trial`, set by the sweeper), or None."""
        super().__init__(trial=None, monitor=monitor)
        if mode not in DIRECTIONS:
            raise ConfigError(f"monitor.mode={mode!r} is not allowed. Allowed: max, min.")
        self.mode, self.trial_number = mode, trial
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
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
        if study.direction != DIRECTIONS[self.mode]:
            raise ConfigError(
                f"monitor.mode={self.mode} but study {study_name!r} is "
                f"{study.direction.name.lower()}d: the pruner would keep the worst trials. "
                f"Allowed: monitor.mode={'max' if study.direction.name == 'MAXIMIZE' else 'min'} "
                f"or a study with hydra.sweeper.direction to match."
            )
        try:
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, self.trial_number
            )
        except KeyError:
            raise ConfigError(
                f"optuna_trial={self.trial_number} is not a trial of study {study_name!r} in "
                f"{storage}. Allowed: a trial the sweeper created (it sets optuna_trial itself)."
            ) from None
        state = study._storage.get_trial(trial_id).state
        if state != TrialState.RUNNING:
            log.warning(
                "Trial %d of study %r is %s already (a rerun of its job?): not reporting to it.",
                self.trial_number,
                study_name,
                state.name,
            )
            return
        self._study, self._trial = study, optuna.trial.Trial(study, trial_id)
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
        if trainer.is_global_zero and self._study is not None:
            try:
                super().on_validation_end(trainer, pl_module)  # report; raise if pruned
            except optuna.TrialPruned:
                verdict = self._explain(trainer.current_epoch)
        if trainer.world_size > 1:
            verdict = trainer.strategy.broadcast(verdict, src=0)
        if verdict is None:
            return
        if trainer.is_global_zero:
            log.info(verdict)
        metrics = {k: float(v) for k, v in epoch_values(trainer.callback_metrics).items()}
        raise TrialPruned(verdict, trainer.current_epoch, metrics)

    def _explain(self, epoch: int) -> str:
        """'Trial 7 pruned at epoch 2: val/acc = 0.81 ... median 0.85 of 4 completed trials ...'"""
        study = self._study
        trials = study.get_trials(deepcopy=False)
        me = study._storage.get_trial(self._trial._trial_id)
        value = me.intermediate_values.get(epoch, math.nan)
        pruner, direction = study.pruner, study.direction
        head = f"Trial {self.trial_number} pruned at epoch {epoch}: {self.monitor}={value:.4f}"
        if isinstance(pruner, PercentilePruner):  # MedianPruner is one, with percentile 50
            best = _get_best_intermediate_result_over_steps(me, direction)
            bar = _get_percentile_intermediate_result_over_trials(
                trials, direction, epoch, pruner._percentile, pruner._n_min_trials
            )
            done = [
                t
                for t in trials
                if t.state == TrialState.COMPLETE and epoch in t.intermediate_values
            ]
            which = (
                "median"
                if pruner._percentile == 50
                else f"{pruner._percentile:g}th percentile ({'top' if direction.name == 'MAXIMIZE' else 'bottom'})"
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
