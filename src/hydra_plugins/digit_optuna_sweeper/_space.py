"""Hydra sweep overrides -> Optuna distributions.

``choice(a, b)`` is categorical; ``interval(lo, hi)`` is a float (or, with two ints, an int)
range, on a log scale when tagged ``tag(log, interval(...))``; ``range(start, stop, step)``
is a stepped range. Anything that is not a sweep is passed unchanged to every trial.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

Choice = str | int | float | bool | None


@dataclass
class SearchSpace:
    """What to sample (``distributions``) and what every trial gets as is (``fixed``).

    ``keys`` maps an Optuna parameter name to the override key that sets it, which differs
    when the override adds a key (``+model.extra=choice(1, 2)``).
    """

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The job overrides for one trial: the fixed ones, then ``key=value`` per parameter."""
        sampled = [f"{self.keys[name]}={_format(params[name])}" for name in self.distributions]
        return [*self.fixed, *sampled]


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _choices(override: Override) -> list[Choice]:
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    for choice in choices:
        if not isinstance(choice, (str, int, float, bool, type(None))):
            raise ValueError(f"{override.input_line}: choices must be scalars, got {choice!r}")
    return choices


def _is_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution for one sweep override."""
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(_choices(override))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        count = math.ceil((stop - start) / step - 1e-9)
        if count < 1:
            raise ValueError(f"{override.input_line}: empty range")
        if _is_int(start, stop, step):
            return IntDistribution(start, start + (count - 1) * step, step=step)
        return FloatDistribution(start, start + (count - 1) * step, step=step)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if _is_int(value.start, value.end):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.input_line}: unsupported sweep for the Optuna sweeper")


def parse_search_space(params: dict[str, str] | None, arguments: Iterable[str]) -> SearchSpace:
    """Combine the configured ``params`` with the command line; the command line wins."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    lines.extend(arguments)
    by_key: dict[str, Override] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        by_key.pop(override.key_or_group, None)
        by_key[override.key_or_group] = override

    space = SearchSpace()
    for name, override in by_key.items():
        if override.is_sweep_override():
            space.distributions[name] = distribution(override)
            space.keys[name] = override.get_key_element()
        else:
            assert override.input_line is not None
            space.fixed.append(override.input_line)
    return space
