"""The study loop of the resumable sweeper, on Optuna's ask-and-tell API: every trial ends
COMPLETE, PRUNED or FAIL, and the study goes on (imported when a sweep starts; Hydra does not scan
modules whose name starts with _).

A failed trial is told FAIL *without* values (Optuna refuses values with FAIL; the sweeper this
replaced, hydra-optuna-sweeper 1.3, passed them and re-raised, so one failed trial ended the
sweep), with why it failed in its `fail_reason` system attribute, the key Optuna itself uses.
"""

import json
import logging
import math
from collections.abc import MutableSequence, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import Trial, TrialState

from . import _space
from ._pruners import make_pruner
from ._storage import open_storage

log = logging.getLogger(__name__)

#: the override that tells a job which trial of the study it runs (read by the pruning callback)
TRIAL_KEY = "optuna_trial"
#: the trial's system attribute that keeps why it failed (the name Optuna's own `optimize` uses)
FAIL_REASON = "fail_reason"
DIRECTIONS = ("minimize", "maximize")


class TooManyFailures(CompactHydraException):
    """More failed trials in a batch than `max_failure_rate` allows."""


class SweeperConfigError(CompactHydraException):
    """A bad `hydra.sweeper.*` value (one line, no traceback)."""


class ResumableOptunaSweeperImpl:
    """The settings of `hydra.sweeper` (`ResumableOptunaSweeperConf`) and the study loop."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space: Any = None,
        custom_search_space: str | None = None,
        params: Any = None,
        pruner: Any = None,
    ) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise SweeperConfigError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate} is not allowed. "
                "Allowed: a share from 0.0 to 1.0."
            )
        if n_jobs < 1:
            raise SweeperConfigError(
                f"hydra.sweeper.n_jobs={n_jobs} is not allowed. Allowed: >= 1."
            )
        self.sampler, self.storage, self.study_name = sampler, storage, study_name
        self.directions = _directions(direction)
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.search_space, self.params = search_space, params
        self.extend_space = (
            instantiate({"_target_": custom_search_space, "_partial_": True})
            if custom_search_space
            else None
        )
        self.pruner = make_pruner(pruner)  # a bad name fails here, before any trial runs
        self.job_idx = 0
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # ---- the study ---------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        """Open (or create) the study, run the trials it still lacks, batch by batch, and write
        `optimization_results.yaml`."""
        space, fixed = self._search_space(arguments)
        storage = open_storage(self.storage)
        target = self.n_trials
        if isinstance(self.sampler, partial) and self.sampler.func is optuna.samplers.GridSampler:
            values = _space.grid(space)
            self.sampler = self.sampler(values)
            target = min(target, math.prod(len(v) for v in values.values()))
            log.info("n_trials=%d: the grid has that many points.", target)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            pruner=self.pruner,
            directions=list(self.directions),
            load_if_exists=True,
        )
        self._storage = storage  # the storage object itself: `_fail` writes through it
        n_to_go = self._continue(study, target)
        log.info(
            "Study %r in %s: sampler %s, pruner %s, directions %s.",
            study.study_name,
            self.storage,
            type(self.sampler).__name__,
            type(self.pruner).__name__ if self.pruner else "none",
            list(self.directions),
        )
        while n_to_go > 0:
            batch = min(n_to_go, self.n_jobs)
            trials = [study.ask(space) for _ in range(batch)]
            overrides = [self._overrides(trial, fixed) for trial in trials]
            lost = ""
            try:
                returns: list[JobReturn | None] = list(
                    self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                )
            except Exception as exc:  # e.g. joblib's TerminatedWorkerError: a job was killed
                log.error(
                    "The launcher lost trials %s (%s: %s): they are marked failed.",
                    [t.number for t in trials],
                    type(exc).__name__,
                    exc,
                )
                returns = [None] * len(trials)
                lost = f"the launcher lost the job: {type(exc).__name__}: {exc}"
            self.job_idx += len(trials)
            states = [
                self._tell(study, trial, ret) if ret is not None else self._fail(study, trial, lost)
                for trial, ret in zip(trials, returns, strict=True)
            ]
            failed = states.count(TrialState.FAIL)
            if failed / len(trials) > self.max_failure_rate:
                raise TooManyFailures(
                    f"{failed} of {len(trials)} trials of the last batch failed, more than "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate} allows: the study "
                    "stops here (run the same command again to continue it)."
                )
            n_to_go -= batch
        self._save_results(study)

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict]:
        """`hydra.sweeper.params` (or the legacy `search_space`), then the command line's sweeps;
        a parameter given a fixed value on the command line leaves the search space."""
        space: dict[str, BaseDistribution] = {}
        if self.search_space is not None and self.params is None:
            log.warning("hydra.sweeper.search_space is deprecated: use hydra.sweeper.params.")
            space.update(_space.from_legacy_config(self.search_space))
        params = [f"{k!s}={v}" for k, v in (self.params or {}).items()]
        override_space, fixed = _space.from_overrides(params + list(arguments))
        space.update(override_space)
        for name in fixed:
            space.pop(name, None)
        return space, fixed

    def _continue(self, study: optuna.Study, target: int) -> int:
        """How many trials the study still lacks to reach `target`; trials a killed sweep left
        RUNNING become FAIL, job numbers continue from the trial count, the sampler is reseeded."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.warning(
                "Trial %d was left running by an interrupted sweep: marked failed.", trial.number
            )
            study.tell(trial.number, state=TrialState.FAIL)
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return target
        states = [t.state for t in trials]
        n_to_go = max(target - len(trials), 0)
        self.job_idx = len(trials)
        self.sampler.reseed_rng()
        log.info(
            "Resuming study %r: %d trials so far (%d complete, %d failed, %d pruned); "
            "running %d more to reach n_trials=%d.",
            study.study_name,
            len(trials),
            states.count(TrialState.COMPLETE),
            states.count(TrialState.FAIL),
            states.count(TrialState.PRUNED),
            n_to_go,
            target,
        )
        return n_to_go

    def _overrides(self, trial: Trial, fixed: dict[str, str]) -> tuple[str, ...]:
        """The job's overrides: the trial's parameters (sampled by `study.ask`), the fixed ones,
        and `optuna_trial=<number>` when a pruner is set (the job reports to that trial)."""
        for name, value in fixed.items():
            trial.set_user_attr(name, value)
        if self.extend_space is not None:
            self.extend_space(self.config, trial)
        overlap = trial.params.keys() & fixed.keys()
        if overlap:
            raise SweeperConfigError(
                f"{sorted(overlap)} are both fixed and searched: custom_search_space suggested a "
                "parameter the command line fixes. Allowed: one or the other."
            )
        overrides = [f"{name}={value}" for name, value in {**trial.params, **fixed}.items()]
        if self.pruner is not None:
            prefix = "" if self.config is not None and TRIAL_KEY in self.config else "++"
            overrides.append(f"{prefix}{TRIAL_KEY}={trial.number}")
        return tuple(overrides)

    # ---- telling the study how a trial ended -------------------------------------------------
    def _tell(self, study: optuna.Study, trial: Trial, ret: JobReturn) -> TrialState:
        """Store what the job of `trial` ended with: its value (COMPLETE), a pruning (PRUNED: the
        job raised `optuna.TrialPruned`), or anything else (FAIL, with the reason)."""
        if ret.status == JobStatus.FAILED:  # the job raised (`ret.return_value` would re-raise it)
            exc = ret._return_value
            if isinstance(exc, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
                log.info("Trial %d pruned: %s", trial.number, exc)
                return TrialState.PRUNED
            return self._fail(study, trial, f"{type(exc).__name__}: {exc}")
        value = ret.return_value
        try:
            values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
        except (TypeError, ValueError):
            return self._fail(study, trial, _job_failure(ret, value))
        if len(values) != len(study.directions) or not all(map(math.isfinite, values)):
            return self._fail(study, trial, _job_failure(ret, value))
        try:
            study.tell(trial, values[0] if len(values) == 1 else values)
        except RuntimeError as exc:  # the grid sampler stops its study once the grid is done
            if "`Study.stop` is supposed to be invoked" not in str(exc):
                raise
        log.info("Trial %d complete: %s.", trial.number, values[0] if len(values) == 1 else values)
        return TrialState.COMPLETE

    def _fail(self, study: optuna.Study, trial: Trial, reason: str) -> TrialState:
        """FAIL, with no values, and `reason` in the trial's `fail_reason` (written through the
        storage's public API: `Trial` has no system attribute setter since Optuna 5)."""
        storage = self._storage
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_system_attr(trial_id, FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("Trial %d failed: %s", trial.number, reason)
        return TrialState.FAIL

    def _save_results(self, study: optuna.Study) -> None:
        """The best trial (or the Pareto front) in optimization_results.yaml, as Hydra's Optuna
        sweeper wrote it, or one error line when no trial completed (the sweep summary is still
        written)."""
        states = [t.state for t in study.get_trials(deepcopy=False)]
        log.info(
            "Study %r: %d trials, %d complete, %d pruned, %d failed.",
            study.study_name,
            len(states),
            states.count(TrialState.COMPLETE),
            states.count(TrialState.PRUNED),
            states.count(TrialState.FAIL),
        )
        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        if TrialState.COMPLETE not in states:
            log.error("No trial of the study completed: see the summary in %s", sweep_dir)
            return
        if len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best trial %d: value %s, parameters %s", best.number, best.value, best.params)
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info("Number of Pareto solutions: %d", len(front))
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _directions(direction: Any) -> Sequence[str]:
    """`direction` as a list of Optuna direction names; a value that is none is one line."""
    given = list(direction) if isinstance(direction, MutableSequence | list) else [direction]
    names = [str(getattr(d, "name", d)).lower() for d in given]
    for name in names:
        if name not in DIRECTIONS:
            raise SweeperConfigError(
                f"hydra.sweeper.direction={direction} is not allowed. "
                "Allowed: minimize, maximize, or a list of them."
            )
    return names


def _job_failure(ret: JobReturn, value: Any) -> str:
    """Why a job returned `value` instead of a number: its results.json error when it has one."""
    reason = f"the job returned {value!r}"
    metric = OmegaConf.select(ret.cfg, "optimized_metric", default=None) if ret.cfg else None
    if value is None and metric:
        reason = f"the job returned no value: it did not produce optimized_metric={metric!r}"
    try:
        output_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        results = json.loads((output_dir / "results.json").read_text())
    except Exception:  # no Hydra config, or no results.json (a job killed before writing it)
        return reason
    error = results.get("error") or {}
    if error:
        return f"{reason}; {output_dir}/results.json: {error.get('type')}: {error.get('message')}"
    metrics = ", ".join(results.get("metrics") or {}) or "none"
    return f"{reason}; {output_dir}/results.json: {results.get('status')}, metrics: {metrics}"
