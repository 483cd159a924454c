"""What a multirun needs beyond a single run: jobs that fail without ending the sweep, DDP ranks
that stay in their job's directory, a resumable Optuna study, and one summary of every job."""
