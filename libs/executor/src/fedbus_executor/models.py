"""A registry of model builders by name, and how each turns a dataset into inputs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedbus_executor.dataset import DatasetSpec, LoadedDataset
from fedbus_executor.errors import ModelError

__all__ = [
    "ModelEntry",
    "SmallCNN",
    "available_models",
    "build_model",
    "get_model_entry",
    "register_model",
]

logger = logging.getLogger(__name__)

Builder = Callable[..., nn.Module]
InputEncoder = Callable[..., tuple[torch.Tensor, ...]]


def image_inputs(data: LoadedDataset, **_: Any) -> tuple[torch.Tensor, ...]:
    """Image datasets feed their feature array as the one model input."""
    if data.features is None:
        raise ModelError(f"dataset {data.spec.name!r} has no numeric features for this model")
    return (torch.from_numpy(data.features.copy()),)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and the function making its input tensors."""

    name: str
    builder: Builder
    encode_inputs: InputEncoder = image_inputs


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, encode_inputs: InputEncoder = image_inputs
) -> Callable[[Builder], Builder]:
    """Register ``builder(spec, **kwargs) -> nn.Module`` under ``name`` (decorator)."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY[name] = ModelEntry(name, builder, encode_inputs)
        return builder

    return wrap


def get_model_entry(name: str) -> ModelEntry:
    """Look up a registered model.

    Raises
    ------
    ModelError
        When no model has that name.
    """
    _load_optional_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {available_models()}") from None


def available_models() -> list[str]:
    """Names of all registered models."""
    _load_optional_models()
    return sorted(_REGISTRY)


def build_model(name: str, spec: DatasetSpec, **kwargs: Any) -> nn.Module:
    """Build model ``name`` for a dataset with ``spec`` (kwargs go to the builder)."""
    try:
        return get_model_entry(name).builder(spec, **kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model {name!r}: {exc}") from exc


def _load_optional_models() -> None:
    # The transformer model registers itself on import; it pulls in transformers.
    from fedbus_executor import text_model  # noqa: F401


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


@register_model("cnn")
def build_cnn(spec: DatasetSpec, *, channels: int = 32, hidden: int = 128) -> nn.Module:
    """Small CNN for 1x28x28 (or any CxHxW with H, W >= 4) images."""
    if len(spec.feature_shape) != 3:
        raise ModelError(f"cnn needs (C, H, W) features, dataset has {spec.feature_shape}")
    return SmallCNN(
        in_shape=spec.feature_shape, num_classes=spec.num_classes, channels=channels, hidden=hidden
    )


@register_model("mlp")
def build_mlp(spec: DatasetSpec, *, hidden: tuple[int, ...] | list[int] = (256, 128)) -> nn.Module:
    """Multi-layer perceptron on the flattened features."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(spec.feature_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)


@register_model("cnn-batchnorm")
def build_cnn_batchnorm(spec: DatasetSpec) -> nn.Module:
    """A CNN with BatchNorm: for showing that DP-SGD fixes or refuses it."""
    c = spec.feature_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, spec.num_classes),
    )
