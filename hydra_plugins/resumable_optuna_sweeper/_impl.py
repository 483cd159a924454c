"""The study loop of the resumable sweeper: every trial ends COMPLETE, PRUNED or FAIL, and the
study goes on (imported when a sweep starts; Hydra does not scan modules whose name starts with _).
"""

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState

from ._pruners import make_pruner

log = logging.getLogger(__name__)

#: the override that tells a job which trial of the study it runs (read by the pruning callback)
TRIAL_KEY = "optuna_trial"
#: the trial's system attribute that keeps why it failed (Optuna 3 uses the same name)
FAIL_REASON = "fail_reason"


class TooManyFailures(CompactHydraException):
    """More failed trials in a batch than `max_failure_rate` allows."""


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    """The stock sweeper with a pruner, and a study loop that survives failed and pruned trials."""

    def __init__(self, *args: Any, pruner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner = make_pruner(pruner)  # a bad name fails here, before any trial runs

    def _configure_trials(self, trials: list[Trial], *args: Any, **kwargs: Any) -> list[tuple]:
        """The stock overrides of each trial, plus `optuna_trial=<number>` when a pruner is set:
        the job reports its intermediate values to that trial."""
        overrides = super()._configure_trials(trials, *args, **kwargs)
        if self.pruner is None:
            return list(overrides)
        prefix = "" if TRIAL_KEY in self.config else "++"
        return [
            (*ov, f"{prefix}{TRIAL_KEY}={trial.number}")
            for ov, trial in zip(overrides, trials, strict=True)
        ]

    def sweep(self, arguments: list[str]) -> None:
        """Replaces the stock `sweep` (hydra-optuna-sweeper 1.3.0), whose study loop is one block:
        it tells a failed trial FAIL *with* the values it could not store (Optuna refuses that, so
        one failing trial ended the sweep), cannot tell PRUNED, and a launcher that raises (a
        killed joblib worker) ends the study. The steps before and after the loop are the stock
        ones, through the stock helpers; `_tell` below is what differs."""
        study, space, fixed = self._create_study(arguments)
        n_to_go = self.n_trials
        while n_to_go > 0:
            batch = min(n_to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, space, fixed)
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

    def _create_study(self, arguments: list[str]) -> tuple[optuna.Study, dict, dict]:
        """The stock preparation: search space from `params` and the command line, grid sampler
        size, fixed parameters; then the study (loaded if it exists), with our pruner."""
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config() + list(arguments)
        is_grid = (
            isinstance(self.sampler, functools.partial)
            and self.sampler.func == optuna.samplers.GridSampler
        )
        override_space, fixed = create_params_from_overrides(params_conf)
        space = dict(self.search_space_distributions or {})
        space.update(override_space)
        if is_grid:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            log.info("Updating num of trials to %d due to using GridSampler.", self.n_trials)
        for name in fixed:
            space.pop(name, None)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        log.info(
            "Study %r in %s: sampler %s, pruner %s, directions %s.",
            study.study_name,
            self.storage,
            type(self.sampler).__name__,
            type(self.pruner).__name__ if self.pruner else "none",
            self._get_directions(),
        )
        return study, space, fixed

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
        trial.set_system_attr(FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("Trial %d failed: %s", trial.number, reason)
        return TrialState.FAIL

    def _save_results(self, study: optuna.Study) -> None:
        """The stock ending (best trial or Pareto front in optimization_results.yaml), or one error
        line when no trial completed (the sweep summary is still written)."""
        states = [t.state for t in study.get_trials(deepcopy=False)]
        log.info(
            "Study %r: %d trials, %d complete, %d pruned, %d failed.",
            study.study_name,
            len(states),
            states.count(TrialState.COMPLETE),
            states.count(TrialState.PRUNED),
            states.count(TrialState.FAIL),
        )
        if TrialState.COMPLETE not in states:
            log.error(
                "No trial of the study completed: see the summary in %s",
                self.config.hydra.sweep.dir,
            )
            return
        if len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best trial %d: value %s, parameters %s", best.number, best.value, best.params)
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info("Number of Pareto solutions: %d", len(front))
        OmegaConf.save(
            OmegaConf.create(results),
            Path(self.config.hydra.sweep.dir) / "optimization_results.yaml",
        )


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
