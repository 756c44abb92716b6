"""The model-source port: round 1's initial weights and server-side evaluation.

The real source (:mod:`fedbus_aggregator.adapters.executor`) builds and scores models with
:mod:`fedbus_executor` (torch); this module stays torch-free so handlers and their tests
load fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from fedbus.aggregation import Model, NamedArrays
from fedbus.events import BaseModelRef, LoraSpec, ModelOptionValue

__all__ = ["ModelSource", "finite_metrics"]


class ModelSource(Protocol):
    """Builds initial weights and evaluates weights for a (model, dataset) pair."""

    def initial_weights(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        model_options: Mapping[str, ModelOptionValue] | None = None,
        lora: LoraSpec | None = None,
    ) -> Model | None:
        """Round 1's global model, or None when the dataset's shape is unknown here.

        ``model_options`` are the job's (``JobSpec.model_options``), for the model plugin.
        With ``lora`` the model is its adapters and trainable modules only.
        """

    def evaluate(
        self,
        *,
        model: str,
        dataset: str,
        weights: NamedArrays,
        model_options: Mapping[str, ModelOptionValue] | None = None,
        lora: LoraSpec | None = None,
    ) -> dict[str, float]:
        """``accuracy``, ``loss`` and ``eval_samples`` on the held-out set ({} if none).

        With ``lora``, ``weights`` are adapters and trainable modules on the base model.
        """

    def base_model(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        lora: LoraSpec,
        model_options: Mapping[str, ModelOptionValue] | None = None,
    ) -> BaseModelRef | None:
        """The base weights LoRA adapters apply to (name, SHA-256); None if the shape is unknown."""


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics safe for the wire (events refuse NaN and infinities).

    A non-finite value (a diverged model) becomes the largest float, so that a reader who
    compares losses still sees divergence, and ``non_finite_metrics`` counts them.
    """
    out: dict[str, float] = {}
    bad = 0
    for name, value in metrics.items():
        if math.isfinite(value):
            out[name] = float(value)
        else:
            out[name] = float(np.finfo(np.float64).max)
            bad += 1
    if bad:
        out["non_finite_metrics"] = float(bad)
    return out
