"""Named tensors to the flat vector the protocol masks, and back.

A model update is named arrays (``fedbus.aggregation.NamedArrays``); SecAgg works on one
flat vector of ``params.dimension`` values. Every party must flatten in the same order:
:class:`Layout` fixes it (names sorted) and is what the round announces with its
parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from fedbus.secagg.errors import InvalidMessageError

__all__ = ["Layout"]


class Layout(BaseModel):
    """Tensor names and shapes, in the order they are laid end to end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tensors: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, arrays: Mapping[str, npt.ArrayLike]) -> Layout:
        """The layout of ``arrays``, names sorted."""
        return cls(tensors=tuple((n, tuple(np.shape(arrays[n]))) for n in sorted(arrays)))

    @property
    def dimension(self) -> int:
        """Total number of values: ``params.dimension`` for a round of this model."""
        return sum(math.prod(shape) for _, shape in self.tensors)

    def flatten(self, arrays: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """The tensors end to end as float64.

        Raises
        ------
        InvalidMessageError
            If the names or shapes differ from the layout's.
        """
        if self.of(arrays) != self:
            raise InvalidMessageError("the update's tensor names or shapes differ from the round's")
        parts = [np.asarray(arrays[n], dtype=np.float64).ravel() for n, _ in self.tensors]
        return np.concatenate(parts) if parts else np.zeros(0)

    def unflatten(self, vector: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
        """The named tensors back from a flat vector (e.g. ``SecAggResult.float_sum()``)."""
        if vector.size != self.dimension:
            raise InvalidMessageError(f"vector has {vector.size} values, layout {self.dimension}")
        out, start = {}, 0
        for name, shape in self.tensors:
            size = math.prod(shape)
            out[name] = vector[start : start + size].reshape(shape)
            start += size
        return out
