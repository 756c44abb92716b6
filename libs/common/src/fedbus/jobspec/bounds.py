"""Intervals of allowed numbers, in words (for messages) and as JSON Schema (for OpenAPI)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AT_LEAST_1", "POSITIVE", "Interval"]


@dataclass(frozen=True)
class Interval:
    """The numbers between ``low`` and ``high`` (None: unbounded on that side).

    ``low_open`` / ``high_open`` leave the bound itself out; ``integer`` allows whole
    numbers only (a JSON number may arrive as a float: ``2.0`` is whole).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def accepts(self, value: float) -> bool:
        """True when ``value`` is a finite number in the interval."""
        if not math.isfinite(value) or (self.integer and not float(value).is_integer()):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    @property
    def allowed(self) -> str:
        """The interval in words: ``at least 1``, ``positive``, ``in [0, 0.5)``."""
        whole = "a whole number " if self.integer else ""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{whole}in {left}{self.low:g}, {self.high:g}{right}"
        if self.low == 0 and self.low_open:
            return f"{whole}positive" if whole else "positive"
        if self.low is not None:
            return f"{whole}{'more than' if self.low_open else 'at least'} {self.low:g}"
        return f"{whole}any number".strip()

    def json_schema(self) -> dict[str, float]:
        """The interval as JSON Schema keywords (``minimum``, ``exclusiveMaximum``, ...)."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


AT_LEAST_1 = Interval(low=1)
POSITIVE = Interval(low=0, low_open=True)
