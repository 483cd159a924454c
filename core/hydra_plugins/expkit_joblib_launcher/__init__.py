"""`hydra/launcher=joblib`, made to survive a job killed or hung (see `launcher.py`)."""
