"""`hydra.sweeper.pruner`: the Optuna pruner of a study, by name or as an instantiable config.

The same value builds the pruner in the sweeper (checked before the first trial) and in every job
(`expkit.callbacks.optuna_pruning`, which asks it whether to stop): a pruner is not stored with the
study, so each process that opens the study passes it again. optuna is imported only when a
pruner is built (Hydra imports this module at every start).

Named with a leading underscore, like `_impl.py`: Hydra's plugin scan re-executes every other
module of hydra_plugins in place, which would replace `PrunerConfigError` under callers' feet.
"""

from collections.abc import Mapping
from typing import Any

from hydra.errors import CompactHydraException

#: name -> (class in optuna.pruners, arguments other than Optuna's defaults)
PRUNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "median": ("MedianPruner", {}),
    "percentile": ("PercentilePruner", {"percentile": 25.0}),
    "hyperband": ("HyperbandPruner", {}),
    "successive_halving": ("SuccessiveHalvingPruner", {}),
}
#: values that mean "no pruning"
NO_PRUNER = (None, "", "none", "null")
ALLOWED = (
    f"{', '.join(PRUNERS)}, none, or a config with _target_: optuna.pruners.<Pruner> and its "
    "arguments"
)


class PrunerConfigError(CompactHydraException):
    """A bad `hydra.sweeper.pruner` value (printed as one line, no traceback)."""


def make_pruner(spec: Any) -> Any:
    """`None` (no pruning), or the `optuna.pruners.BasePruner` that `spec` names or configures.

    `spec`: `median`, `percentile`, `hyperband`, `successive_halving`, `none`/null, an
    `optuna.pruners` instance, or a mapping `{_target_: optuna.pruners.MedianPruner, ...}`.
    """
    import optuna

    if isinstance(spec, optuna.pruners.BasePruner):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in NO_PRUNER):
        return None
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name not in PRUNERS:
            raise PrunerConfigError(
                f"hydra.sweeper.pruner={spec!r} is not a pruner. Allowed: {ALLOWED}."
            )
        cls_name, kwargs = PRUNERS[name]
        return getattr(optuna.pruners, cls_name)(**kwargs)
    if isinstance(spec, Mapping) or hasattr(spec, "items"):
        return _instantiate(dict(spec.items()))
    raise PrunerConfigError(
        f"hydra.sweeper.pruner={spec!r} ({type(spec).__name__}) is not a pruner. Allowed: {ALLOWED}."
    )


def _instantiate(spec: dict[str, Any]) -> Any:
    import optuna
    from hydra.utils import instantiate

    if "_target_" not in spec:
        raise PrunerConfigError(
            f"hydra.sweeper.pruner={spec!r} is not a pruner (no _target_). Allowed: {ALLOWED}."
        )
    target = str(spec["_target_"])
    cls = getattr(optuna.pruners, target.removeprefix("optuna.pruners."), None)
    if not target.startswith("optuna.pruners.") or not (
        isinstance(cls, type) and issubclass(cls, optuna.pruners.BasePruner)
    ):
        raise PrunerConfigError(
            f"hydra.sweeper.pruner._target_={target!r} is not a pruner of optuna.pruners. "
            f"Allowed: {ALLOWED}."
        )
    try:
        return instantiate(spec, _convert_="all")
    except Exception as exc:  # a misspelled or out-of-range argument
        cause = exc.__cause__ or exc
        raise PrunerConfigError(
            f"hydra.sweeper.pruner={spec} cannot be built: {type(cause).__name__}: {cause}"
        ) from None
