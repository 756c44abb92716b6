"""Example fedbus model plugins (entry-point group ``fedbus.models``, see pyproject.toml).

- ``sample-convnet``: Opacus's MNIST ``SampleConvNet`` (its DP-SGD example network), for
  1x28x28 images; no options.
- ``tabular-mlp``: a small MLP for rows of numbers, with ``hidden`` widths and ``dropout``.

docs/models.md walks through writing, testing, packaging and deploying a package like this.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedbus_executor import DatasetSpec, ModelError, ModelPlugin, NoOptions

__all__ = [
    "SAMPLE_CONVNET",
    "TABULAR_MLP",
    "SampleConvNet",
    "TabularMLP",
    "TabularMLPOptions",
]


class SampleConvNet(nn.Module):
    """Opacus's MNIST example network (examples/mnist.py): two convs, two dense layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # [B, 16, 14, 14]
        x = F.max_pool2d(x, 2, 1)  # [B, 16, 13, 13]
        x = F.relu(self.conv2(x))  # [B, 32, 5, 5]
        x = F.max_pool2d(x, 2, 1)  # [B, 32, 4, 4]
        x = x.flatten(1)  # [B, 512]
        x = F.relu(self.fc1(x))  # [B, 32]
        return self.fc2(x)  # type: ignore[no-any-return]


def build_sample_convnet(options: NoOptions, facts: DatasetSpec) -> nn.Module:
    """Opacus's MNIST SampleConvNet (1x28x28 images)."""
    del options
    if tuple(facts.feature_shape) != (1, 28, 28):
        raise ModelError(
            f"sample-convnet needs 1x28x28 images, dataset {facts.name!r} has "
            f"feature shape {list(facts.feature_shape)}"
        )
    return SampleConvNet(num_classes=facts.num_classes)


class TabularMLPOptions(BaseModel):
    """Options of ``tabular-mlp``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: tuple[int, ...] = Field(
        default=(64, 32), min_length=1, max_length=8, description="hidden layer widths"
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout after each layer")


class TabularMLP(nn.Module):
    """Dense layers with ReLU and dropout, on the flattened features."""

    def __init__(self, in_features: int, num_classes: int, options: TabularMLPOptions) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in options.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(options.dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))  # type: ignore[no-any-return]


def build_tabular_mlp(options: TabularMLPOptions, facts: DatasetSpec) -> nn.Module:
    """A small MLP for tabular rows (any numeric feature shape, flattened)."""
    if not facts.feature_shape:
        raise ModelError(f"tabular-mlp needs numeric features, dataset {facts.name!r} has none")
    if any(h < 1 for h in options.hidden):
        raise ModelError(f"tabular-mlp: hidden widths must be >= 1, got {list(options.hidden)}")
    return TabularMLP(math.prod(facts.feature_shape), facts.num_classes, options)


SAMPLE_CONVNET = ModelPlugin(
    "sample-convnet", build_sample_convnet, NoOptions,
    description="Opacus's MNIST SampleConvNet (1x28x28 images)",
)  # fmt: skip
TABULAR_MLP = ModelPlugin(
    "tabular-mlp", build_tabular_mlp, TabularMLPOptions,
    description="small MLP for tabular rows (options: hidden, dropout)",
)  # fmt: skip
