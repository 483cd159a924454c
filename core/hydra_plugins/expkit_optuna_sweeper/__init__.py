"""A Hydra sweeper plugin (Hydra only loads sweepers from the `hydra_plugins` namespace package):
the Optuna sweeper, resumable. See `resumable_optuna_sweeper.py`; used by configs/hparams_search/."""
