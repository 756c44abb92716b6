"""Pure helpers shared by the strategies: norms, layout checks, flattening."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedbus.aggregation.errors import EmptyRoundError, IncompatibleUpdateError
from fedbus.aggregation.updates import ClientUpdate, FloatArray, Model, NamedArrays

__all__ = [
    "Layout",
    "apply_delta",
    "check_same_layout",
    "l2_norm",
    "stack_deltas",
    "unflatten",
]


def l2_norm(arrays: NamedArrays) -> float:
    """L2 norm of all named arrays taken together, as one flat vector.

    Each tensor's sum of squares is a BLAS dot product in its dtype (at least
    float32); the per-tensor sums are added in float64.
    """
    total = 0.0
    for array in arrays.values():
        flat = np.ravel(array).astype(np.result_type(array.dtype, np.float32), copy=False)
        total += float(np.vdot(flat, flat))
    return math.sqrt(total)


def check_same_layout(
    reference: Mapping[str, npt.NDArray[Any]], arrays: Mapping[str, npt.NDArray[Any]], *, who: str
) -> None:
    """Raise :class:`IncompatibleUpdateError` unless names and shapes match."""
    if set(reference) != set(arrays):
        missing = sorted(set(reference) - set(arrays))
        extra = sorted(set(arrays) - set(reference))
        raise IncompatibleUpdateError(f"{who}: missing tensors {missing}, unexpected {extra}")
    for name, array in arrays.items():
        if np.shape(array) != np.shape(reference[name]):
            raise IncompatibleUpdateError(
                f"{who}: tensor {name!r} has shape {np.shape(array)}, "
                f"expected {np.shape(reference[name])}"
            )


def apply_delta(global_model: NamedArrays, delta: NamedArrays, *, scale: float = 1.0) -> Model:
    """``global + scale * delta`` per tensor, in the global model's dtypes."""
    check_same_layout(global_model, delta, who="delta")
    return {
        name: (array + scale * delta[name]).astype(array.dtype, copy=False)
        for name, array in global_model.items()
    }


@dataclass(frozen=True, slots=True)
class Layout:
    """Names, shapes and dtypes needed to cut a flat vector back into tensors."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype[Any], ...]


def stack_deltas(updates: Sequence[ClientUpdate]) -> tuple[FloatArray, Layout]:
    """Stack the deltas as rows of an (n_clients, n_parameters) matrix.

    Robust aggregators need every update at once; this costs n times the model size.
    """
    if not updates:
        raise EmptyRoundError("no updates to aggregate")
    first = updates[0].delta
    names = tuple(first)
    layout = Layout(
        names=names,
        shapes=tuple(np.shape(first[name]) for name in names),
        dtypes=tuple(first[name].dtype for name in names),
    )
    dtype = np.result_type(np.float32, *layout.dtypes)
    rows = []
    for update in updates:
        check_same_layout(first, update.delta, who=f"client {update.client_id}")
        rows.append(np.concatenate([np.ravel(update.delta[n]).astype(dtype) for n in names]))
    return np.stack(rows), layout


def unflatten(vector: FloatArray, layout: Layout) -> Model:
    """Cut a flat vector into named tensors (inverse of one row of :func:`stack_deltas`)."""
    out: Model = {}
    offset = 0
    for name, shape, dtype in zip(layout.names, layout.shapes, layout.dtypes, strict=True):
        size = math.prod(shape)
        out[name] = vector[offset : offset + size].reshape(shape).astype(dtype)
        offset += size
    return out
