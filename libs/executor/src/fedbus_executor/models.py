"""The model facade (names, building, inputs) and the built-in models.

Models are plugins (:mod:`fedbus_executor.plugins`): the entry-point group ``fedbus.models``
of every installed distribution, this one included (``cnn``, ``cnn-batchnorm``, ``mlp``;
``minilm-classifier`` in :mod:`fedbus_executor.text_model`). :func:`get_model_entry`,
:func:`build_model` and :func:`available_models` read that registry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.errors import ModelError
from fedbus_executor.plugins import (
    ModelEntry,
    ModelPlugin,
    NoOptions,
    image_inputs,
    load_entries,
    plugin_errors,
    register_model,
    validate_options,
)

__all__ = [
    "CNN",
    "CNN_BATCHNORM",
    "MLP",
    "CNNOptions",
    "MLPOptions",
    "ModelEntry",
    "SmallCNN",
    "available_models",
    "build_model",
    "get_model_entry",
    "image_inputs",
    "model_inputs",
    "plugin_errors",
    "register_model",
]

logger = logging.getLogger(__name__)


def get_model_entry(name: str) -> ModelEntry:
    """The model ``name``: its plugin, options schema and providing distribution.

    Raises
    ------
    ModelError
        When no installed plugin provides that name.
    """
    entries = load_entries()
    if name in entries:
        return entries[name]
    broken = [e.error for e in plugin_errors() if e.entry_point == name]
    why = f" (its plugin failed to load: {broken[0]})" if broken else ""
    raise ModelError(f"unknown model {name!r}{why}; known: {sorted(entries)}")


def available_models() -> list[str]:
    """Names of every model this environment can build."""
    return sorted(load_entries())


def build_model(name: str, spec: DatasetSpec, **options: Any) -> nn.Module:
    """Build model ``name`` for a dataset with ``spec``; ``options`` are the model's options.

    Raises
    ------
    ModelError
        Unknown model, options its schema refuses
        (:class:`~fedbus_executor.plugins.ModelOptionsError`), or a dataset it does not fit.
    """
    entry = get_model_entry(name)
    return entry.build(validate_options(name, options), spec)


def model_inputs(name: str, data: Any, options: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The input tensors of model ``name`` for a loaded dataset (its plugin's encoder)."""
    validated = validate_options(name, options)
    return get_model_entry(name).encode_inputs(data, **validated.model_dump())


class SmallCNN(nn.Module):
    """Two conv blocks with GroupNorm (Opacus-compatible, no BatchNorm) and an MLP head."""

    def __init__(
        self,
        *,
        in_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 32,
        hidden: int = 128,
        groups: int = 8,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.GroupNorm(groups, 2 * channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * channels * (h // 4) * (w // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


class CNNOptions(BaseModel):
    """Options of ``cnn``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: int = Field(default=32, ge=8, multiple_of=8, description="first conv's channels")
    hidden: int = Field(default=128, ge=1, description="width of the hidden dense layer")


def build_cnn(options: CNNOptions, spec: DatasetSpec) -> nn.Module:
    """Small CNN (GroupNorm, Opacus-compatible) for CxHxW images with H, W >= 4."""
    if len(spec.feature_shape) != 3:
        raise ModelError(f"cnn needs (C, H, W) features, dataset has {spec.feature_shape}")
    return SmallCNN(
        in_shape=spec.feature_shape,
        num_classes=spec.num_classes,
        channels=options.channels,
        hidden=options.hidden,
    )


class MLPOptions(BaseModel):
    """Options of ``mlp``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: tuple[int, ...] = Field(default=(256, 128), description="hidden layer widths")


def build_mlp(options: MLPOptions, spec: DatasetSpec) -> nn.Module:
    """Multi-layer perceptron on the flattened features."""
    if not spec.feature_shape:
        raise ModelError(f"mlp needs numeric features, dataset {spec.name!r} has none")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(spec.feature_shape)
    for size in options.hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)


def build_cnn_batchnorm(options: NoOptions, spec: DatasetSpec) -> nn.Module:
    """A CNN with BatchNorm: for showing that DP-SGD fixes or refuses it."""
    del options
    if len(spec.feature_shape) != 3:
        raise ModelError(
            f"cnn-batchnorm needs (C, H, W) features, dataset has {spec.feature_shape}"
        )
    c = spec.feature_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, spec.num_classes),
    )


CNN = ModelPlugin("cnn", build_cnn, CNNOptions)
"""Entry point ``cnn`` of ``fedbus-executor``."""
MLP = ModelPlugin("mlp", build_mlp, MLPOptions)
"""Entry point ``mlp`` of ``fedbus-executor``."""
CNN_BATCHNORM = ModelPlugin("cnn-batchnorm", build_cnn_batchnorm, NoOptions)
"""Entry point ``cnn-batchnorm`` of ``fedbus-executor``."""
