"""Model source over :mod:`fedbus_executor` and the ``--eval-data`` files.

Both round 1's initial weights and evaluation need the dataset's spec: it comes from the
held-out test set given with ``--eval-data NAME=PATH`` (``test.parquet`` of
``fedbus data prepare``, its ``manifest.json`` beside it or in a parent folder).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from fedbus.aggregation import Model, NamedArrays
from fedbus.errors import NonRetryableError
from fedbus.events import BaseModelRef, LoraSpec, ModelOptionValue
from fedbus_executor import (
    DataRef,
    DatasetCache,
    DatasetSpec,
    ExecutorError,
    TrainingExecutor,
    base_weights_sha256,
    initial_weights,
    lora_settings,
)
from fedbus_executor import ModelRef as ExecutorModelRef

__all__ = ["ExecutorModels"]

log = logging.getLogger(__name__)


class ExecutorModels:
    """A model source over :mod:`fedbus_executor` and ``--eval-data`` files.

    Parameters
    ----------
    eval_data
        Dataset name (as in ``round.started``) -> held-out Parquet file; its
        ``manifest.json`` is beside it or in a parent folder.
    device
        Where evaluation runs (``auto``: CUDA, then MPS, then CPU).
    """

    def __init__(self, eval_data: Mapping[str, Path], *, device: str = "auto") -> None:
        self._paths = dict(eval_data)
        self._device = device
        self._specs: dict[str, DatasetSpec] = {
            name: DataRef(path=str(path)).resolve_spec() for name, path in self._paths.items()
        }
        # The held-out sets are read and validated once, not after every round.
        self._datasets = DatasetCache(capacity=max(1, len(self._paths)))
        self._executor = TrainingExecutor(datasets=self._datasets)
        self._bases: dict[tuple[str, str, int, str, str], BaseModelRef] = {}
        self._preload()

    def _preload(self) -> None:
        for name, path in self._paths.items():
            try:
                self._datasets.load(path, self._specs[name])
            except ExecutorError as exc:  # evaluation reports it each round, as before
                log.warning("held-out set %s (%s) not loaded: %s", name, path, exc)

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets this source can build and evaluate models for."""
        return sorted(self._paths)

    def initial_weights(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        model_options: Mapping[str, ModelOptionValue] | None = None,
        lora: LoraSpec | None = None,
    ) -> Model | None:
        """Round 1's weights for ``model`` on ``dataset``, or None when its spec is unknown.

        The model comes from its plugin (entry point ``fedbus.models``) with the job's
        ``model_options``, as on the trainers.

        Raises
        ------
        NonRetryableError
            When the model cannot be built for the dataset (a CNN on text, say).
        """
        spec = self._specs.get(dataset)
        if spec is None:
            return None
        try:
            return initial_weights(
                model, seed, spec, lora=lora_settings(lora), **dict(model_options or {})
            )
        except ExecutorError as exc:  # the round cannot succeed: it expires with this reason
            raise NonRetryableError(f"{model!r} on {dataset!r}: {exc}") from exc

    def evaluate(
        self,
        *,
        model: str,
        dataset: str,
        weights: NamedArrays,
        model_options: Mapping[str, ModelOptionValue] | None = None,
        lora: LoraSpec | None = None,
    ) -> dict[str, float]:
        """Score ``weights`` on the held-out set; a failed evaluation is logged and gives {}."""
        path = self._paths.get(dataset)
        if path is None:
            return {}
        state = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in weights.items()}
        try:
            result = self._executor.evaluate(
                model=ExecutorModelRef(name=model, kwargs=dict(model_options or {})),
                weights=state,
                data=DataRef(path=str(path), spec=self._specs[dataset]),
                lora=lora_settings(lora),
                device=self._device,
            )
        except ExecutorError as exc:
            log.warning("evaluation of %s on %s failed: %s", model, dataset, exc)
            return {}
        return {
            "accuracy": result.accuracy,
            "loss": result.loss,
            "eval_samples": float(result.num_samples),
        }

    def base_model(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        lora: LoraSpec,
        model_options: Mapping[str, ModelOptionValue] | None = None,
    ) -> BaseModelRef | None:
        """Name and SHA-256 of the base weights ``lora``'s adapters apply to (once per job)."""
        spec = self._specs.get(dataset)
        if spec is None:
            return None
        options = dict(model_options or {})
        key = (model, dataset, seed, lora.model_dump_json(), repr(sorted(options.items())))
        if key not in self._bases:
            try:
                digest = base_weights_sha256(
                    model,
                    seed,
                    spec,
                    lora=lora_settings(lora),
                    **options,
                )
            except ExecutorError as exc:
                raise NonRetryableError(f"{model!r} on {dataset!r}: {exc}") from exc
            self._bases[key] = BaseModelRef(name=model, sha256=digest)
        return self._bases[key]
