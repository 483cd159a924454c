"""A Hydra launcher for one workstation with several GPUs: sweep jobs in parallel, one GPU each
(`hydra/launcher=gpu_pool`). See `gpu_pool_launcher.py`; the pool itself is `_pool.py`, one job's
process `_worker.py`."""
