"""A SLURM launcher that survives what the scheduler does to a job (see `launcher.py`)."""
