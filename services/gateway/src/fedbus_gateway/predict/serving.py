"""Predictions from registered versions: load, verify, build, cache, batch.

A version is loaded on its first request, for the caller's tenant: the registry's version
record (its SHA-256 and privacy guarantee), then its weights from the registry's artifact
route (decrypted and verified there, SHA-256 checked again here), then the model built by
the job spec's model name and ``model_options`` through ``fedbus_executor.models.build_model``
for the dataset's facts (feature shape, classes), and the weights loaded strictly (every
tensor, every shape).
The registry does not record a dataset's facts, only its name (the job spec's ``dataset``):
they come from :data:`KNOWN_DATASETS` (the datasets ``fedbus data prepare`` makes) or from
``FEDBUS_GATEWAY_PREDICT_DATASETS``. Loaded versions stay in a small LRU cache, each with its
own :class:`~fedbus_gateway.predict.batcher.MicroBatcher`.

torch and ``fedbus_executor`` are imported only when a version is first loaded: the gateway
without them (its torch-free image) answers 501 saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from fedbus_gateway.adapters.registry import (
    RegistryArtifact,
    RegistryClient,
    RegistryUnavailableError,
)
from fedbus_gateway.predict.batcher import Forward, MicroBatcher
from fedbus_gateway.predict.inputs import to_batch

__all__ = ["KNOWN_DATASETS", "DatasetFacts", "PredictError", "Predictor", "ServedVersion"]

log = logging.getLogger(__name__)


class DatasetFacts(BaseModel):
    """What building a model needs to know of its dataset: one example's shape, the classes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_shape: tuple[int, ...] = Field(min_length=1)
    classes: tuple[str, ...] = Field(min_length=2)


_DIGITS = tuple(str(i) for i in range(10))
_FASHION = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
            "bag", "ankle boot")  # fmt: skip
KNOWN_DATASETS: dict[str, DatasetFacts] = {
    "mnist": DatasetFacts(feature_shape=(1, 28, 28), classes=_DIGITS),
    "fashion-mnist": DatasetFacts(feature_shape=(1, 28, 28), classes=_FASHION),
    "digits": DatasetFacts(feature_shape=(1, 8, 8), classes=_DIGITS),
}
"""The image datasets of ``fedbus data prepare`` (``fedbus_executor.sources``), by name."""


class PredictError(Exception):
    """A request the gateway answers with ``status`` and ``detail`` (the route raises it)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class ServedVersion:
    """A loaded version: its facts, its privacy guarantee and the batcher of its model."""

    name: str
    version: int
    model: str
    dataset: str
    facts: DatasetFacts
    privacy: dict[str, Any]
    batcher: MicroBatcher


class Predictor:
    """Serves predictions of registered versions for the caller's tenant.

    Parameters
    ----------
    registry
        The registry client (version records and verified weights).
    capacity
        Versions kept loaded (LRU).
    max_rows
        Rows one request may send (more: 413).
    batch_rows, batch_wait_s
        The micro-batcher's limits (rows per forward pass; a short batch's wait for more,
        none by default).
    datasets
        Facts of datasets beyond :data:`KNOWN_DATASETS` (they win on a name in both).
    torch_threads
        torch's intra-op threads for the forward passes (set when a version is first built;
        None leaves torch's default, one per core). One by default: the event loop needs a
        core, and on a busy machine two threads made the CNN's 64-row pass 3x slower.
    """

    def __init__(
        self,
        registry: RegistryClient,
        *,
        capacity: int = 4,
        max_rows: int = 256,
        batch_rows: int = 64,
        batch_wait_s: float = 0.0,
        datasets: Mapping[str, DatasetFacts] | None = None,
        torch_threads: int | None = 1,
    ) -> None:
        self._registry = registry
        self._torch_threads = torch_threads
        self.capacity, self.max_rows = capacity, max_rows
        self._batch_rows, self._batch_wait_s = batch_rows, batch_wait_s
        self._datasets = {**KNOWN_DATASETS, **(datasets or {})}
        self._loaded: OrderedDict[tuple[str, str, int], ServedVersion] = OrderedDict()
        self._loading: dict[tuple[str, str, int], asyncio.Task[ServedVersion]] = {}
        self.loads = 0
        """Versions loaded from the registry so far (cache misses that succeeded)."""

    async def predict(self, tenant: str, name: str, version: int, inputs: object) -> dict[str, Any]:
        """The response body: labels, probabilities and the version's privacy guarantee.

        Raises
        ------
        PredictError
            404 (no such version for the tenant), 413/422 (the inputs), 501 (cannot serve
            this model here), 502/503 (the registry), 500 (the weights do not fit the model).
        """
        served = await self.version(tenant, name, version)
        batch = to_batch(inputs, served.facts.feature_shape, max_rows=self.max_rows)
        probabilities = await served.batcher.submit(batch)
        indices = probabilities.argmax(axis=1)
        classes = served.facts.classes
        return {
            "model": served.name,
            "version": served.version,
            "classes": list(classes),
            "labels": [classes[i] for i in indices.tolist()],
            "probabilities": probabilities.tolist(),
            "privacy": served.privacy,
        }

    async def version(self, tenant: str, name: str, version: int) -> ServedVersion:
        """The loaded version (from the cache, or loaded once however many ask at once)."""
        key = (tenant, name, version)
        found = self._loaded.get(key)
        if found is not None:
            self._loaded.move_to_end(key)
            return found
        loading = self._loading.get(key)
        if loading is None:
            # A task of its own: a caller that goes away does not cancel the others' load.
            loading = asyncio.create_task(self._load_and_keep(key))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load_and_keep(self, key: tuple[str, str, int]) -> ServedVersion:
        served = await self._load(*key)
        self._loaded[key] = served
        self.loads += 1
        while len(self._loaded) > self.capacity:
            evicted, _ = self._loaded.popitem(last=False)
            log.info("predictions: unloaded %s version %d of tenant %s (LRU)",
                     evicted[1], evicted[2], evicted[0])  # fmt: skip
        return served

    async def _load(self, tenant: str, name: str, version: int) -> ServedVersion:
        record = _ok(await self._call(self._registry.version(tenant, name, version)))
        artifact = await self._call(self._registry.artifact(tenant, name, version))
        if not isinstance(artifact, RegistryArtifact):
            _ok(artifact)
            raise PredictError(502, "the model registry answered without the artifact")
        expected = _registered_sha256(record)
        actual = hashlib.sha256(artifact.data).hexdigest()
        if expected is None or actual != expected or artifact.sha256 != expected:
            raise PredictError(
                502, f"version {version} of {name!r}: the weights' SHA-256 {actual} is not the "
                f"registered {expected}; refusing to serve them"
            )  # fmt: skip
        facts = self._datasets.get(artifact.dataset)
        if facts is None:
            raise PredictError(
                501, f"version {version} of {name!r} was trained on dataset "
                f"{artifact.dataset!r}, whose feature shape and classes this gateway does not "
                f"know (known: {sorted(self._datasets)}); add them to "
                "FEDBUS_GATEWAY_PREDICT_DATASETS"
            )  # fmt: skip
        forward = await asyncio.to_thread(
            _build, artifact, facts, name, version, self._torch_threads
        )
        log.info("predictions: loaded %s version %d of tenant %s (model %s, dataset %s, "
                 "sha256 %s)", name, version, tenant, artifact.model, artifact.dataset,
                 expected[:12])  # fmt: skip
        return ServedVersion(
            name=name,
            version=version,
            model=artifact.model,
            dataset=artifact.dataset,
            facts=facts,
            privacy=_privacy(record),
            batcher=MicroBatcher(forward, max_rows=self._batch_rows, max_wait_s=self._batch_wait_s),
        )

    @staticmethod
    async def _call(call: Any) -> Any:
        try:
            return await call
        except RegistryUnavailableError as exc:
            raise PredictError(503, str(exc)) from exc


def _ok(reply: Any) -> dict[str, Any]:
    """The body of a registry reply that succeeded; its 4xx passes through, 5xx is 502."""
    if reply.status_code >= 500:
        raise PredictError(502, f"the model registry answered {reply.status_code}")
    if reply.status_code != 200 or not isinstance(reply.body, dict):
        detail = reply.body.get("detail") if isinstance(reply.body, dict) else None
        raise PredictError(reply.status_code, str(detail or "the model registry refused"))
    return reply.body


def _registered_sha256(record: Mapping[str, Any]) -> str | None:
    artifact = record.get("artifact")
    sha = artifact.get("sha256") if isinstance(artifact, dict) else None
    return sha.lower() if isinstance(sha, str) else None


def _privacy(record: Mapping[str, Any]) -> dict[str, Any]:
    """The version's guarantee as the registry recorded it (ledger-certified)."""
    privacy = record.get("privacy")
    privacy = privacy if isinstance(privacy, dict) else {}
    return {
        "mode": privacy.get("mode", "none"),
        "epsilon": privacy.get("epsilon"),
        "delta": privacy.get("delta"),
    }


def _build(
    artifact: RegistryArtifact,
    facts: DatasetFacts,
    name: str,
    version: int,
    threads: int | None = None,
) -> Forward:
    """The model of ``artifact`` as a forward function: rows in, class probabilities out."""
    try:
        import torch

        from fedbus_executor.dataset import DatasetSpec
        from fedbus_executor.errors import ExecutorError
        from fedbus_executor.models import build_model
        from fedbus_executor.weights import bytes_to_state_dict
    except ImportError as exc:
        raise PredictError(
            501, f"predictions need torch and fedbus-executor installed beside the gateway "
            f"({exc.name} is missing)"
        ) from None  # fmt: skip
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    where = f"version {version} of {name!r} (model {artifact.model!r})"
    spec = DatasetSpec(
        name=artifact.dataset, feature_shape=facts.feature_shape, classes=facts.classes
    )
    try:
        module = build_model(artifact.model, spec, **artifact.model_options)
        state = bytes_to_state_dict(artifact.data, expected_sha256=artifact.sha256)
        module.load_state_dict(state, strict=True)
    except ExecutorError as exc:
        raise PredictError(501, f"{where}: this gateway cannot build it: {exc}") from None
    except RuntimeError as exc:  # load_state_dict: missing, unexpected or misshapen tensors
        raise PredictError(
            500, f"{where}: the registered weights do not fit the model built for dataset "
            f"{artifact.dataset!r}: {str(exc)[:500]}"
        ) from None  # fmt: skip
    module.eval()

    def forward(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            logits = module(torch.from_numpy(rows))
            return torch.softmax(logits.float(), dim=1).numpy()

    return forward
