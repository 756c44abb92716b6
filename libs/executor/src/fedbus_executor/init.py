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
from torch import nn

from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.errors import ModelError
from fedbus_executor.models import build_model
from fedbus_executor.task import LoRASettings
from fedbus_executor.training import returned_state
from fedbus_executor.weights import StateDict, sha256_hex, state_dict_to_bytes

__all__ = ["base_weights_sha256", "initial_weights", "merged_weights", "seeded_model"]


def initial_weights(
    model_name: str,
    seed: int,
    dataset_spec: DatasetSpec,
    *,
    lora: LoRASettings | None = None,
    **model_kwargs: Any,
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
    lora
        With LoRA: only the adapters and trainable modules of the model with adapters
        applied (their PEFT names), what trainers train and send.
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
    base, model = seeded_model(model_name, seed, dataset_spec, lora=lora, **model_kwargs)
    del base
    state = returned_state(model, trainable_only=lora is not None)
    return {name: _to_numpy(tensor) for name, tensor in state.items()}


def seeded_model(
    model_name: str,
    seed: int,
    dataset_spec: DatasetSpec,
    *,
    lora: LoRASettings | None = None,
    **model_kwargs: Any,
) -> tuple[StateDict, nn.Module]:
    """The model built on CPU under ``torch.manual_seed(seed)``, adapters applied with ``lora``.

    Returns the base weights (with LoRA: the built model's state less the trainable modules,
    taken before the adapters are applied; else {}) and the model.
    """
    # Fork the RNG so that seeding here does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_name, dataset_spec, **model_kwargs)
        if lora is None:
            return {}, model
        from fedbus_executor.lora import apply_lora, base_state  # peft only when used

        base = base_state(model, lora)
        return base, apply_lora(model, lora)


def base_weights_sha256(
    model_name: str,
    seed: int,
    dataset_spec: DatasetSpec,
    *,
    lora: LoRASettings,
    **model_kwargs: Any,
) -> str:
    """SHA-256 of the base weights LoRA adapters apply to (safetensors of :func:`seeded_model`'s
    base: a pretrained encoder's weights do not depend on ``seed``)."""
    base, _ = seeded_model(model_name, seed, dataset_spec, lora=lora, **model_kwargs)
    return sha256_hex(state_dict_to_bytes(base))


def merged_weights(
    model_name: str,
    seed: int,
    dataset_spec: DatasetSpec,
    adapters: StateDict,
    *,
    lora: LoRASettings,
    base_sha256: str | None = None,
    **model_kwargs: Any,
) -> StateDict:
    """Full weights: the base model with ``adapters`` (adapters + head) merged in.

    Raises
    ------
    ModelError
        When the base weights built here do not have ``base_sha256`` (another version of
        the pretrained weights, or another seed), or the adapters do not fit.
    """
    base, model = seeded_model(model_name, seed, dataset_spec, lora=lora, **model_kwargs)
    if base_sha256 is not None:
        found = sha256_hex(state_dict_to_bytes(base))
        if found != base_sha256:
            raise ModelError(
                f"the base weights of {model_name!r} built here have SHA-256 {found}, the "
                f"adapters were trained on {base_sha256}: refusing to merge"
            )
    from fedbus_executor.lora import merge_lora

    return merge_lora(model, adapters)


def _to_numpy(tensor: torch.Tensor) -> npt.NDArray[Any]:
    cpu = tensor.detach().to("cpu")
    if cpu.is_floating_point():
        cpu = cpu.to(torch.float32)
    return np.ascontiguousarray(cpu.numpy())
