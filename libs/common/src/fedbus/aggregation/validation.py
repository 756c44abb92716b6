"""Validation of a client update against the global model, before aggregation.

A bad update is an expected event (a buggy or malicious trainer), so rejection is
a value with a reason, not an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedbus.aggregation.helpers import l2_norm
from fedbus.aggregation.updates import ClientUpdate, NamedArrays

__all__ = ["ValidationResult", "validate_update"]


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of :func:`validate_update`: ``ok``, or not with a ``reason``."""

    ok: bool
    reason: str | None = None
    norm: float | None = None

    def __bool__(self) -> bool:
        """Truthy when the update was accepted."""
        return self.ok


def validate_update(
    update: ClientUpdate, *, global_model: NamedArrays, max_norm: float | None = None
) -> ValidationResult:
    """Check an update: positive sample count, same tensors as the model, finite, bounded.

    Parameters
    ----------
    update
        The client's delta and sample count.
    global_model
        The model the client was asked to train; names, shapes and dtypes must match.
    max_norm
        Optional bound on the L2 norm of the whole delta.

    Returns
    -------
    ValidationResult
        ``ok=True`` with the delta's norm, or ``ok=False`` with the first problem found.
    """
    problem = _structure_problem(update, global_model)
    if problem is not None:
        return ValidationResult(ok=False, reason=problem)
    for name, array in update.delta.items():
        if not np.isfinite(array).all():
            return ValidationResult(ok=False, reason=f"tensor {name!r} has NaN or infinite values")
    norm = l2_norm(update.delta)
    if not math.isfinite(norm):
        return ValidationResult(ok=False, reason="delta norm overflows", norm=norm)
    if max_norm is not None and norm > max_norm:
        return ValidationResult(
            ok=False, reason=f"delta norm {norm:.6g} exceeds bound {max_norm:.6g}", norm=norm
        )
    return ValidationResult(ok=True, norm=norm)


def _structure_problem(update: ClientUpdate, global_model: NamedArrays) -> str | None:
    if not update.client_id:
        return "empty client id"
    if isinstance(update.num_samples, bool) or update.num_samples <= 0:
        return f"num_samples must be > 0, got {update.num_samples}"
    missing = sorted(set(global_model) - set(update.delta))
    extra = sorted(set(update.delta) - set(global_model))
    if missing or extra:
        return f"tensor names differ: missing {missing}, unexpected {extra}"
    for name, reference in global_model.items():
        array = update.delta[name]
        if np.shape(array) != np.shape(reference):
            return f"tensor {name!r} has shape {np.shape(array)}, expected {np.shape(reference)}"
        if np.asarray(array).dtype != np.asarray(reference).dtype:
            return f"tensor {name!r} has dtype {array.dtype}, expected {reference.dtype}"
    return None
