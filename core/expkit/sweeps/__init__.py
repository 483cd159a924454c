"""What a multirun needs beyond a single run: jobs that fail without ending the sweep (`job`), DDP
ranks that stay in their job's directory (`ddp`), and one summary of every job (`summary`). The
resumable Optuna sweeper is a Hydra plugin, so it lives in hydra_plugins/expkit_optuna_sweeper/."""

import warnings

# configs/hydra/launcher/{joblib,submitit_local}.yaml keep the names users know from the plugins, so
# Hydra validates them against the plugins' schemas (useful) and warns that it matches by name
# (deprecated since Hydra 1.1, still the behaviour of the pinned 1.3): quiet that warning only.
warnings.filterwarnings(
    "ignore",
    message=r"\s*'hydra/launcher/(joblib|submitit_local)' is validated against ConfigStore",
)
