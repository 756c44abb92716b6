"""One problem with a job spec: where (a field path), what (a message), and a machine code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MAX_PROBLEMS", "ProblemCode", "SpecProblem", "did_you_mean", "shown"]

MAX_PROBLEMS = 50
"""At most this many problems are listed for one spec (a body of 100,000 unknown keys
would otherwise make an error answer larger than the request)."""

_MAX_SHOWN = 60


class ProblemCode(StrEnum):
    """Machine-readable kinds of spec problems (``job.rejected`` reason codes too)."""

    UNKNOWN_FIELD = "unknown_field"
    """A field or strategy option that the spec does not have (maybe misspelt)."""
    INVALID_TYPE = "invalid_type"
    """A value of the wrong JSON type: a bool or a string where a number belongs, ..."""
    INVALID_VALUE = "invalid_value"
    """A value of the right type that is out of range or contradicts another field."""
    MISSING_FIELD = "missing_field"
    """A required field or strategy option is absent."""
    MISSING_PRIVACY_PARAMETER = "missing_privacy_parameter"
    """A DP mode lacks a parameter it needs (the clipping norm, the budget)."""


@dataclass(frozen=True)
class SpecProblem:
    """One reason a job spec cannot run.

    Attributes
    ----------
    code
        What kind of problem (:class:`ProblemCode`).
    loc
        Where, as path segments from the spec: ``("spec", "privacy", "delta")``. Option names
        may contain dots, so the path is kept as segments.
    message
        What is wrong, in words, for a person.
    """

    code: ProblemCode
    loc: tuple[str, ...]
    message: str

    @property
    def field(self) -> str:
        """The dotted field path, e.g. ``spec.privacy.delta``."""
        return ".".join(self.loc)


def shown(name: str) -> str:
    """``name`` as a message or a path shows it (it comes from outside).

    Long names are cut, and an unpaired surrogate is written as its escape (``\\ud800``):
    an answer with one in it could not be encoded as UTF-8.
    """
    name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return name if len(name) <= _MAX_SHOWN else name[: _MAX_SHOWN - 1] + "\u2026"


def did_you_mean(name: str, known: Iterable[str], *, what: str) -> str:
    """The end of an "unknown name" message: the closest known name, or all of them.

    ``what`` names the known ones in the plural: ``"fields of spec.training"``.
    """
    names = sorted(known)
    if not names:
        return f"there are no {what}"
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"the {what} are: {', '.join(names)}"
