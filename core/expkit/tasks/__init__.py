"""The task bodies behind a project's entry points (`src/train.py` and friends call these).

Each takes the composed config and returns the run's metrics; tests call them in-process.
"""
