"""A predict request's ``inputs`` as a float32 batch, or a 4xx that says what was expected."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["InputError", "to_batch"]


@dataclass(frozen=True)
class InputError(Exception):
    """``inputs`` cannot be used: ``status`` is 422 (shape, type, value) or 413 (too many rows)."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def to_batch(
    raw: object, feature_shape: tuple[int, ...], *, max_rows: int
) -> npt.NDArray[np.float32]:
    """The rows of ``raw`` as a ``(n, *feature_shape)`` float32 array.

    ``raw`` is a list of rows; each row is an array of ``feature_shape`` or, flat, a list of
    ``prod(feature_shape)`` numbers. Numbers only (integers or floats; no text, booleans or
    null), each finite as a float32.

    Raises
    ------
    InputError
        413 with more than ``max_rows`` rows; 422 for anything else wrong, saying what the
        model expects and what was sent.
    """
    width = math.prod(feature_shape)
    expected = f"rows of shape {_shape(feature_shape)} (or {width} numbers each, flat)"
    if not isinstance(raw, list) or not raw:
        raise InputError(422, f"inputs: expected a non-empty list of {expected}")
    if len(raw) > max_rows:
        raise InputError(
            413, f"inputs: {len(raw)} rows; at most {max_rows} rows per request, send more "
            "requests"
        )  # fmt: skip
    try:
        array = np.asarray(raw)
    except (ValueError, TypeError, OverflowError):
        # numpy refuses lists of unequal lengths ("inhomogeneous shape")
        raise InputError(
            422, f"inputs: the rows are not all the same shape; expected {expected}"
        ) from None
    if array.dtype.kind not in "iuf":
        raise InputError(422, f"inputs: expected numbers, got {_kind(array)}; {expected}")
    rows = array.shape[1:]
    if rows != feature_shape and rows != (width,):
        raise InputError(
            422, f"inputs: expected {expected}, got rows of shape {_shape(rows)}"
        )  # fmt: skip
    with np.errstate(over="ignore", invalid="ignore"):
        batch = array.astype(np.float32).reshape((len(array), *feature_shape))
    finite = np.isfinite(batch)
    if not finite.all():
        row, *where = (int(i) for i in np.argwhere(~finite)[0])
        raise InputError(
            422, f"inputs: row {row} has a value that is not a finite float32 (NaN, infinity "
            f"or beyond +-3.4e38) at index {_shape(tuple(where))}"
        )  # fmt: skip
    return batch


def _kind(array: npt.NDArray[np.generic]) -> str:
    if array.dtype.kind == "b":
        return "booleans"
    if array.dtype.kind in "US":
        return "text"
    if array.dtype.kind == "c":
        return "complex numbers"
    return "null, nested objects or integers beyond 64 bits"
