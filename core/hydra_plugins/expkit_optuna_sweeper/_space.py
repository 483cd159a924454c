"""The search space of a study: `hydra.sweeper.params` and sweep overrides of the command line
turned into Optuna distributions (`optuna.distributions`, public API).

The syntax and its meaning are those of hydra-optuna-sweeper 1.3, which configs and stored
studies were written for:
- `choice(a, b, ...)` -> CategoricalDistribution (a list choice as its text, `[256,128]`); a
  shuffled range too;
- `interval(lo, hi)` -> FloatDistribution; `int(interval(lo, hi))` -> IntDistribution;
  `tag(log, interval(lo, hi))` the same with `log=True`;
- `range(start, stop, step)` -> IntDistribution(start, stop, step) (ints) or FloatDistribution
  with `step`: `stop` included, as that sweeper did (Hydra's own `range` excludes it);
- anything that is not a sweep is a fixed value, passed to every trial unchanged.
The grid sampler's grid from those distributions is also as that sweeper made it.
"""

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import CompactHydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

Space = dict[str, BaseDistribution]


class SearchSpaceError(CompactHydraException):
    """A search space Optuna cannot sample (printed as one line, no traceback)."""


def from_overrides(arguments: list[str]) -> tuple[Space, dict[str, str]]:
    """(distributions, fixed values) of `key=value` overrides in Hydra's sweep syntax."""
    space: Space = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        name = override.get_key_element()
        if override.is_sweep_override():
            space[name] = _distribution(override)
        else:
            fixed[name] = override.get_value_element_as_str()
    return space, fixed


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        assert isinstance(value, ChoiceSweep | RangeSweep)
        # encoded as the override text would spell them: a list choice is the string "[256,128]"
        return CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode))
        )
    if isinstance(value, RangeSweep):
        assert value.start is not None and value.stop is not None
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise SearchSpaceError(
        f"{override.input_line} is not a sweep Optuna can sample. "
        "Allowed: choice(...), range(...), interval(...), tag(log, interval(...))."
    )


def from_legacy_config(search_space: Mapping[str, Any]) -> Space:
    """`hydra.sweeper.search_space` (deprecated since Hydra 1.2, still read): `{name: {type:
    int|float|categorical, low, high, log, step, choices}}`."""
    space: Space = {}
    for name, spec in search_space.items():
        kind = str(spec.get("type", ""))
        low, high = spec.get("low"), spec.get("high")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if kind == "categorical":
            space[str(name)] = CategoricalDistribution(list(spec["choices"]))
        elif kind == "int":
            space[str(name)] = IntDistribution(
                int(low), int(high), log=log, step=int(step) if step is not None and not log else 1
            )
        elif kind == "float":
            space[str(name)] = FloatDistribution(low, high, log=log, step=None if log else step)
        else:
            raise SearchSpaceError(
                f"hydra.sweeper.search_space.{name}.type={kind!r} is not a distribution type. "
                "Allowed: int, float, categorical."
            )
    return space


def grid(space: Space) -> dict[str, list[Any]]:
    """The grid sampler's values of each parameter (discrete distributions only)."""
    values: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution | FloatDistribution) and dist.step is not None:
            if dist.log:
                break
            n_items = int((dist.high - dist.low) // dist.step)
            values[name] = [dist.low + i * dist.step for i in range(n_items)]
        else:
            break
    else:
        return values
    raise SearchSpaceError(
        f"{name}: the grid sampler needs discrete values, not {dist}. "
        "Allowed: choice(...) or range(...)."
    )
