"""An Optuna study over the examples' own arguments (the autoencoder's search space, applied to
every example the project holds). Generated only with the autoencoder and Optuna."""

import pytest

from test_any_module import EXAMPLES, SWEEP_FAST, cli


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_optuna_study_over_the_modules_own_arguments(tmp_path, name):
    import optuna

    args = ["hparams_search=autoencoder_optuna", f"model={name}", "hydra.sweeper.n_trials=3"]
    args += ["hydra.sweeper.pruner=median", *SWEEP_FAST]
    cli(args, tmp_path)
    sweep = tmp_path / "train" / "optuna" / "autoencoder_optuna"
    study = optuna.load_study(
        study_name="autoencoder_optuna", storage=f"sqlite:///{sweep}/optuna.db"
    )
    states = [t.state.name for t in study.trials]
    assert len(states) == 3 and "FAIL" not in states
    assert len({t.params["model.lr"] for t in study.trials}) == 3
    assert all(t.intermediate_values for t in study.trials)  # the pruner heard every epoch
