"""Which runs the table keeps: tags, task, status, start date, and `--where KEY OP VALUE`.

`--where` takes any name `Run.value` knows: a config key (`optimizer.lr>1e-3`,
`model.net.hidden_sizes=[64,128,64]`), a config group's choice (`model=cnn`, `experiment=digits_cnn`),
a metric (`val/acc_best>=0.9`) or a field (`status!=failed`). Operators: `=` (or `==`), `!=`,
`>`, `>=`, `<`, `<=`. Numbers compare as numbers (`1e-3` < `0.01`, whether the config holds
`0.001` or `1e-3`); `true`/`false`/`null` as YAML reads them; anything else as text (so dates in
ISO form order correctly). A run that lacks the key matches no condition, `!=` included: a filter
never keeps a run because it knows nothing about it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from expkit.runs_table.read import MISSING, Run

OPERATORS = ("=", "!=", ">", ">=", "<", "<=")
STATUSES = ("completed", "failed", "interrupted", "pruned", "missing", "unreadable")
_CONDITION = re.compile(r"^\s*([^\s=!<>]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")
_ORDER = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class FilterError(ValueError):
    """A filter the user typed that cannot be understood (one line: what, the value, what is allowed)."""


@dataclass(frozen=True)
class Condition:
    """`key op value` from `--where`; `matches(run)` applies it."""

    key: str
    op: str
    text: str

    @property
    def expected(self) -> Any:
        return parse_value(self.text)

    def matches(self, run: Run) -> bool:
        actual = run.value(self.key)
        if actual is MISSING:
            return False
        return compare(actual, self.op, self.expected)


def parse_condition(text: str) -> Condition:
    """`"optimizer.lr>1e-3"` → `Condition("optimizer.lr", ">", "1e-3")`; `FilterError` if malformed."""
    found = _CONDITION.match(text)
    if not found or not found.group(3):
        raise FilterError(
            f"--where {text!r} is not a condition. Allowed: KEY OP VALUE with OP one of "
            f"{' '.join(OPERATORS)}, e.g. --where 'optimizer.lr>1e-3' --where model=cnn."
        )
    key, op, value = found.groups()
    return Condition(key, "=" if op == "==" else op, value)


def parse_value(text: str) -> Any:
    """A typed value: a number, true/false, null, a [list], else the text itself (quotes removed)."""
    number = _as_number(text)
    if number is not None:
        return number
    if text[:1] in "[{" or text.lower() in ("true", "false", "null", "~"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _as_number(value: Any) -> float | None:
    """int/float (not bool), or a string that reads as one (`1e-3` included: YAML 1.1 would not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def canonical(value: Any) -> Any:
    """Values that mean the same compare equal: 1 == 1.0, [64, 128] == ['64', '128'] parsed."""
    number = _as_number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("null", "none", "~"):
            return None
        return value
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


def compare(actual: Any, op: str, expected: Any) -> bool:
    """`actual op expected`, numbers as numbers; a comparison that means nothing is False."""
    a, b = canonical(actual), canonical(expected)
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    a_is_num, b_is_num = isinstance(a, float), isinstance(b, float)
    if a_is_num and b_is_num:
        return not math.isnan(a) and _ORDER[op](a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _ORDER[op](a, b)
    return False


def parse_date(text: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(
            f"{option} {text!r} is not a date. Allowed: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]."
        ) from None


@dataclass
class Filters:
    """Everything a run must satisfy to be in the table (each empty field: no constraint)."""

    tags: Sequence[str] = ()  # every one of these tags
    tasks: Sequence[str] = ()  # any of these tasks
    statuses: Sequence[str] = ()  # any of these statuses
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    where: Sequence[Condition] = field(default_factory=tuple)  # every condition

    def matches(self, run: Run) -> bool:
        if self.tasks and run.task not in self.tasks:
            return False
        if self.statuses and run.status not in self.statuses:
            return False
        if self.tags and not set(self.tags) <= set(run.tags):
            return False
        if self.since or self.until:
            started = run.started
            if started is None:
                return False
            started = started.replace(tzinfo=None)
            if self.since and started < self.since.replace(tzinfo=None):
                return False
            if self.until and started >= self.until.replace(tzinfo=None):
                return False
        return all(condition.matches(run) for condition in self.where)


def select(runs: Iterable[Run], filters: Filters) -> list[Run]:
    """The runs that satisfy `filters`, in their order."""
    return [run for run in runs if filters.matches(run)]
