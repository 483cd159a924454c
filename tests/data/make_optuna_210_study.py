"""Writes tests/data/optuna-2.10-study.db: a study as the old stack (optuna 2.10.1, SQLAlchemy 1.4,
hydra-optuna-sweeper 1.3 distributions) stored it: 3 trials, COMPLETE, PRUNED, FAIL."""
import sys
import optuna
from optuna.distributions import CategoricalDistribution, LogUniformDistribution, UniformDistribution
from optuna.trial import TrialState

storage = f"sqlite:///{sys.argv[1]}"
study = optuna.create_study(study_name="digits_optuna", storage=storage, direction="maximize",
                            sampler=optuna.samplers.RandomSampler(seed=0))
space = {
    "optimizer.lr": LogUniformDistribution(0.0003, 0.03),
    "optimizer.weight_decay": LogUniformDistribution(1e-6, 1e-2),
    "data.batch_size": CategoricalDistribution([32, 64, 128]),
    "model.net.dropout": UniformDistribution(0.0, 0.3),
}
for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
    trial = study.ask(space)
    if state == TrialState.COMPLETE:
        for epoch, v in enumerate([0.8, 0.9, 0.93]):
            trial.report(v, epoch)
        study.tell(trial, 0.93)
    elif state == TrialState.PRUNED:
        trial.report(0.5, 0)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_system_attr("fail_reason", "RuntimeError: injected")
        study.tell(trial, state=TrialState.FAIL)
print([ (t.number, t.state.name, t.value) for t in study.trials])
