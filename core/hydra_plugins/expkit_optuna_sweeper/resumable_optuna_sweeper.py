"""The Optuna sweeper of the template (`hydra/sweeper=resumable_optuna`): resumable, with pruning,
and a study that survives failed trials. Written on Optuna's public API (ask-and-tell, storages,
samplers, pruners); its settings and search space syntax are those of hydra-optuna-sweeper 1.3
(`hydra.sweeper.params`, `sampler`, `direction`, `storage`, `study_name`, `n_trials`, `n_jobs`,
`max_failure_rate`, `search_space`, `custom_search_space`), plus `pruner`:

- `n_trials` is the size the study should reach: a rerun adds only the trials still missing
  (3 done and `n_trials=5`: 2 more; the same `n_trials` again: none);
- job numbers continue from the study's trial count, so job directory `k` holds trial `k`;
- trials left RUNNING by a sweep that was killed are marked FAIL (one sweep process per study);
- a resumed study reseeds its sampler, so it does not replay the first invocation's draws;
- the sweep directory (where the sqlite database lives) exists before the study opens;
- `multirun.yaml` is saved in the sweep directory, as Hydra's basic sweeper does;
- every trial ends COMPLETE, PRUNED or FAIL and the study goes on (`_impl.py`): a job that raised,
  returned NaN or no value (a failed job returns NaN, `expkit.sweeps.job`), or was lost by the
  launcher (a killed joblib worker) is FAIL, with the reason in the log and in the trial's
  `fail_reason` attribute; a job that raised `optuna.TrialPruned` is PRUNED;
- `pruner:` (`median`, `percentile`, `hyperband`, `successive_halving`, or an
  `optuna.pruners` config, see `_pruners.py`) is the study's pruner; each trial's job gets
  `optuna_trial=<number>` and reports to that trial (`expkit.callbacks.optuna_pruning`);
- a study whose trials all failed ends with an error line, not a traceback, so the sweep summary
  is still written;
- a database written by an older Optuna is refused with the one command that upgrades it.

Hydra imports every module of `hydra_plugins` at start-up: this one stays light (optuna is
imported when a sweep starts) and independent of `src`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig, OmegaConf

from ._samplers import SAMPLERS


@dataclass
class ResumableOptunaSweeperConf:
    """`hydra.sweeper.*`: the keys of hydra-optuna-sweeper 1.3's `OptunaSweeperConf`, plus
    `pruner`."""

    _target_: str = (
        "hydra_plugins.expkit_optuna_sweeper.resumable_optuna_sweeper.ResumableOptunaSweeper"
    )
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    # hydra/sweeper/sampler=tpe|random|cmaes|nsgaii|grid|qmc|gp (see _samplers.py)
    sampler: Any = MISSING
    # minimize or maximize, or a list of them (one per value the task returns)
    direction: Any = "minimize"
    # where the study lives, e.g. sqlite:///path/optuna.db (null: in memory, this process only)
    storage: Any = None
    study_name: str | None = None
    # the size the study should reach (a rerun adds the missing trials)
    n_trials: int = 20
    # trials per batch: they run in parallel with a parallel launcher (hydra/launcher=joblib)
    n_jobs: int = 2
    # the share of failed trials in a batch past which the study stops
    max_failure_rate: float = 0.0
    # deprecated since Hydra 1.2 (use params): {name: {type: int|float|categorical, low, ...}}
    search_space: dict[str, Any] | None = None
    # the search space in Hydra's sweep syntax: {optimizer.lr: tag(log, interval(1e-4, 1e-1))}
    params: dict[str, str] | None = None
    # a function (cfg, trial) -> None that suggests more parameters, as a dotted path
    custom_search_space: str | None = None
    # null (no pruning), median, percentile, hyperband, successive_halving, or
    # {_target_: optuna.pruners.<Pruner>, ...its arguments}
    pruner: Any = None


store = ConfigStore.instance()
store.store(
    group="hydra/sweeper",
    name="resumable_optuna",
    node=ResumableOptunaSweeperConf,
    provider="resumable_optuna_sweeper",
)
for _name, _node in SAMPLERS.items():
    store.store(
        group="hydra/sweeper/sampler", name=_name, node=_node, provider="resumable_optuna_sweeper"
    )


class ResumableOptunaSweeper(Sweeper):
    """Hydra's entry into the study loop (`_impl.ResumableOptunaSweeperImpl`, built here so that
    optuna is imported only when a sweep starts)."""

    def __init__(self, **kwargs: Any) -> None:
        from ._impl import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config

    def sweep(self, arguments: list[str]) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.sweeper.sweep(arguments)
