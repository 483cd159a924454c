"""The configs the library ships (callbacks, logger, trainer, hydra, paths, debug, extras).

A project's primary configs add `pkg://expkit.configs` to Hydra's search path; a file of the same
group and name in the project's own `configs/` takes precedence over the one here.
"""
