"""expkit: the machinery under the experiment template, as a versioned library.

A project built from the template keeps its own models, data and configs; everything a run needs
around them (lifecycle, checkpoints and trust, callbacks, loggers, sweeps, cross-validation, the runs
table, Hydra plugins and the configs they select) comes from here, pinned by version. What a project
may import, subclass or name as a `_target_` is listed in `expkit.api` (the public API); anything
else may change in any release.
"""

__version__ = "1.1.0"
