"""The round-1 global model: the same initial weights in every process, from name and seed.

A federated job has no stored model before its first round. Every trainer and the
aggregator build it themselves from the model name and the round's seed; they agree bit
for bit because the weights come from ``torch.manual_seed(seed)`` and a CPU build, which
depend on nothing else (not on the device, the data or the process).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.models import build_model

__all__ = ["initial_weights"]


def initial_weights(
    model_name: str, seed: int, dataset_spec: DatasetSpec, **model_kwargs: Any
) -> dict[str, npt.NDArray[Any]]:
    """Build ``model_name`` for ``dataset_spec`` on CPU with ``torch.manual_seed(seed)``.

    Parameters
    ----------
    model_name
        A registered model name (``cnn``, ``mlp``, ...).
    seed
        The seed every process uses (the round's seed in round 1).
    dataset_spec
        The dataset's declared shape (feature shape, classes), from its manifest.
    model_kwargs
        Builder arguments, when the job gives any.

    Returns
    -------
    dict[str, numpy.ndarray]
        The model's state dict as arrays: floating tensors as float32, others unchanged.

    Raises
    ------
    ModelError
        When the model name is unknown or does not fit the dataset.
    """
    # Fork the RNG so that seeding here does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_name, dataset_spec, **model_kwargs)
        state = model.state_dict()
    return {name: _to_numpy(tensor) for name, tensor in state.items()}


def _to_numpy(tensor: torch.Tensor) -> npt.NDArray[Any]:
    cpu = tensor.detach().to("cpu")
    if cpu.is_floating_point():
        cpu = cpu.to(torch.float32)
    return np.ascontiguousarray(cpu.numpy())
