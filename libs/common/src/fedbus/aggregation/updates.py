"""Value types shared by the aggregation strategies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = ["ClientUpdate", "FloatArray", "Model", "NamedArrays"]

FloatArray: TypeAlias = NDArray[np.floating[Any]]
#: A model or a delta: tensor name -> array, as trainers ship them in safetensors.
NamedArrays: TypeAlias = Mapping[str, FloatArray]
#: A freshly built model or delta owned by the caller.
Model: TypeAlias = dict[str, FloatArray]


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One client's contribution to a round.

    Parameters
    ----------
    client_id
        Who sent it.
    delta
        ``local - global``: the client's trained weights minus the global model it
        started from, per tensor name.
    num_samples
        Number of training examples behind the update (the FedAvg weight).
    """

    client_id: str
    delta: NamedArrays
    num_samples: int
