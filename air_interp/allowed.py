"""What a value read from outside may hold: a kind, and a range or a set of choices, checked once.

Config fields declare an :class:`Allowed` beside them (:mod:`air_interp.config`), and library
arguments that come from users are checked the same way; a value that does not fit is a one-line
:class:`AirInterpError` naming it, the value and what is allowed.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import dataclass
from typing import Any

from .errors import AirInterpError

_REFUSED = object()


@dataclass(frozen=True)
class Allowed:
    """The values of one kind (``int``, ``float``, ``bool`` or ``str``) in a range or among choices.

    An integral float (``4.0``) is an ``int``, an ``int`` is a ``float``; a bool is never a number,
    and NaN or infinity never a value. ``low`` is the least value (with ``above``: the bound every
    value must exceed), ``high`` the largest.
    """

    kind: type
    low: float | None = None
    above: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed too

    def check(self, value: Any, label: str) -> Any:
        """``value`` as this kind holds it; a one-line AirInterpError naming ``label`` when it does not fit."""
        converted = self._convert(value)
        if converted is _REFUSED:
            raise AirInterpError(f"{label} must be {self.describe()}, got {reprlib.repr(value)}")
        return converted

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "a string"
        else:
            text = ("an integer" if self.kind is int else "a number") + self._range()
        return text + (" or None" if self.optional else "")

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f" in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f" {'>' if self.above else '>='} {self.low:g}"
        return ""

    def _convert(self, value: Any) -> Any:
        if value is None:
            return None if self.optional else _REFUSED
        if self.choices:
            return value if isinstance(value, str) and value in self.choices else _REFUSED
        if self.kind in (bool, str):
            return value if isinstance(value, self.kind) else _REFUSED
        number = _number(self.kind, value)
        return number if number is not _REFUSED and self._in_range(number) else _REFUSED

    def _in_range(self, number: float) -> bool:
        if self.low is not None and (number <= self.low if self.above else number < self.low):
            return False
        return self.high is None or number <= self.high


def _number(kind: type, value: Any) -> Any:
    """``value`` as an ``int`` or ``float``, or _REFUSED."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return _REFUSED
    if kind is int and isinstance(value, numbers.Integral):
        return int(value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return _REFUSED
    if not math.isfinite(number):
        return _REFUSED
    if kind is float:
        return number
    return int(number) if number.is_integer() else _REFUSED
