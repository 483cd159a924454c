"""Hydra's Optuna sweeper, made resumable, with pruning, and a study that survives failed trials.

The stock sweeper (hydra-optuna-sweeper 1.3) runs `n_trials` more trials on every invocation,
numbers its jobs from 0 each time (a second invocation would write into the first one's job
directories, since the sweep directory must stay fixed for the study's database to be found
again), cannot open an sqlite file in a directory that does not exist yet, has no pruner, and ends
the whole sweep at the first failed trial (it tells Optuna FAIL *with* the NaN value, which Optuna
refuses). This subclass changes what happens around the stock sweep:

- `n_trials` is the size the study should reach: a rerun adds only the trials still missing
  (3 done and `n_trials=5`: 2 more; the same `n_trials` again: none);
- job numbers continue from the study's trial count, so job directory `k` holds trial `k`;
- trials left RUNNING by a sweep that was killed are marked FAIL (one sweep process per study);
- a resumed study reseeds its sampler, so it does not replay the first invocation's draws;
- the sweep directory (where the sqlite database lives) exists before the study opens;
- `multirun.yaml` is saved in the sweep directory, as Hydra's basic sweeper does;
- every trial ends COMPLETE, PRUNED or FAIL and the study goes on (`_impl.py`): a job that raised,
  returned NaN or no value (a failed job returns NaN, `src.sweeps.job`), or was lost by the
  launcher (a killed joblib worker) is FAIL, with the reason in the log and in the trial's
  `fail_reason` attribute; a job that raised `optuna.TrialPruned` is PRUNED;
- `pruner:` (`median`, `percentile`, `hyperband`, `successive_halving`, or an
  `optuna.pruners` config, see `pruners.py`) is the study's pruner; each trial's job gets
  `optuna_trial=<number>` and reports to that trial (`src.callbacks.optuna_pruning`);
- a study whose trials all failed ends with an error line, not a traceback, so the sweep summary
  is still written.

Hydra imports every module of `hydra_plugins` at start-up: this one stays light (optuna is
imported when a sweep starts) and independent of `src`.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def load_existing_study(study_name: str | None, storage: Any) -> Any:
    """The `optuna.Study` in `storage`, or None when there is no storage or no such study yet."""
    import optuna

    if storage is None:
        return None
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except (KeyError, ValueError):  # optuna 2.x: KeyError for an unknown name
        return None


@dataclass
class ResumableOptunaSweeperConf(OptunaSweeperConf):
    """The stock sweeper's settings (`hydra/sweeper=optuna`) plus `pruner`."""

    _target_: str = (
        "hydra_plugins.resumable_optuna_sweeper.resumable_optuna_sweeper.ResumableOptunaSweeper"
    )
    # null (no pruning), median, percentile, hyperband, successive_halving, or
    # {_target_: optuna.pruners.<Pruner>, ...its arguments}
    pruner: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="resumable_optuna",
    node=ResumableOptunaSweeperConf,
    provider="resumable_optuna_sweeper",
)


class ResumableOptunaSweeper(OptunaSweeper):
    def __init__(self, *, pruner: Any = None, **kwargs: Any) -> None:
        """The stock arguments (`OptunaSweeperConf`) and `pruner`. The stock `__init__` only builds
        its implementation; ours (a subclass of it, `_impl.py`) replaces it."""
        from ._impl import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(pruner=pruner, **kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config

    def sweep(self, arguments: list[str]) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._continue_study()
        self.sweeper.sweep(arguments)

    def _continue_study(self) -> None:
        from optuna.trial import TrialState

        impl = self.sweeper
        study = load_existing_study(impl.study_name, impl.storage)
        if study is None:
            return
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.warning(
                "Trial %d was left running by an interrupted sweep: marked failed.", trial.number
            )
            study.tell(trial.number, state=TrialState.FAIL)
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return
        states = [t.state for t in trials]
        wanted = impl.n_trials
        impl.n_trials = max(wanted - len(trials), 0)
        impl.job_idx = len(trials)
        if hasattr(impl.sampler, "reseed_rng"):
            impl.sampler.reseed_rng()
        log.info(
            "Resuming study %r: %d trials so far (%d complete, %d failed, %d pruned); "
            "running %d more to reach n_trials=%d.",
            study.study_name,
            len(trials),
            states.count(TrialState.COMPLETE),
            states.count(TrialState.FAIL),
            states.count(TrialState.PRUNED),
            impl.n_trials,
            wanted,
        )
