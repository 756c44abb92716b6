"""The registry's internal read API (the gateway authenticates callers and passes their tenant).

Routes (every one takes ``?tenant=T``; another tenant's model answers 404 like an unknown one):

- ``GET /v1/models``: ``{"tenant", "models": [{"name", "latest_version", "updated_at"}]}``
- ``GET /v1/models/{name}/versions``: ``{"tenant", "name", "versions": [<version>, ...]}``
- ``GET /v1/models/{name}/versions/{version}``: ``<version>`` plus ``download_url`` (presigned)
- ``GET /v1/models/{name}/versions/{version}/artifact`` (only with ``read_artifact``): the
  version's weights as plaintext safetensors, decrypted and checked against the registered
  size and SHA-256; headers ``X-Fedbus-Sha256``, ``X-Fedbus-Model``, ``X-Fedbus-Dataset`` and
  ``X-Fedbus-Model-Options`` (the job spec's ``model``, ``dataset`` and ``model_options`` as
  JSON, percent-encoded). The gateway serves predictions
  with it, so it needs neither MinIO credentials nor the artifact keys.
- ``GET /v1/jobs/{job_id}/model``: the version registered for a job, as the route above
- ``GET /v1/jobs/{job_id}/checkpoints`` (only with ``checkpoints=True``): ``{"tenant",
  "job_id", "checkpoints": [{"round", "participants", "metrics", "artifact", "download_url"}]}``

A ``<version>`` is ``{tenant, name, version, job_id, status, rounds, metrics, round_metrics,
artifact{object_key, size_bytes, sha256}, strategy{name, options}, privacy{mode, epsilon,
delta}, participants, parent_version, created_at, base_model}``; ``base_model`` is
``{name, sha256}`` for a LoRA job (``artifact`` then holds its adapters and head: merge them
into the base with ``fedbus_executor.merged_weights(..., base_sha256=base_model.sha256)``;
there is no CLI command or route for it), else null.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Path, Query, Response

from fedbus.errors import NonRetryableError, RetryableError
from fedbus.events import ModelRef, StorableText
from fedbus_registry.store import RegistryStore
from fedbus_registry.versions import ModelVersion

__all__ = ["build_app", "version_body"]

# Every parameter reaches PostgreSQL: text without NUL or unpaired surrogates, a version
# within the ``integer`` column; anything else is a 422 naming the parameter.
Tenant = Annotated[StorableText, Query(min_length=1, description="The caller's tenant")]
Name = Annotated[StorableText, Path(description="The model's name")]
JobId = Annotated[StorableText, Path(description="The job's id")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version number")]


def version_body(version: ModelVersion) -> dict[str, Any]:
    """The JSON of one version (without ``download_url``)."""
    spec = version.spec
    guarantee = spec.guarantee
    return {
        "tenant": spec.tenant,
        "name": spec.name,
        "version": version.version,
        "job_id": spec.job_id,
        "status": spec.status.value,
        "rounds": spec.rounds,
        "metrics": spec.metrics,
        "round_metrics": [{"round": r, "metrics": m} for r, m in spec.round_metrics],
        "base_model": None if spec.base_model is None else spec.base_model.model_dump(),
        "artifact": spec.artifact.model_dump(mode="json"),
        "strategy": spec.strategy.model_dump(mode="json"),
        "privacy": {
            "mode": spec.privacy_mode.value,
            "epsilon": guarantee.epsilon if guarantee else None,
            "delta": guarantee.delta if guarantee else None,
            "accountant": guarantee.accountant if guarantee else None,
            "noise_multiplier": guarantee.noise_multiplier if guarantee else None,
            "clipping_norm": guarantee.clipping_norm if guarantee else None,
            "rounds": guarantee.rounds if guarantee else None,
        },
        "participants": list(spec.participants),
        "parent_version": version.parent_version,
        "created_at": version.created_at.isoformat(),
    }


ArtifactReader = Callable[[ModelRef], Awaitable[bytes]]
"""Reads an artifact's plaintext, checked against its reference (``ArtifactStore.get_bytes``)."""


def build_app(
    store: RegistryStore,
    *,
    presign: Callable[[ModelRef], str],
    checkpoints: bool = False,
    read_artifact: ArtifactReader | None = None,
) -> FastAPI:
    """A FastAPI app with the read routes; pass it to ``fedbus.service.Service(app=...)``.

    Parameters
    ----------
    store
        Where versions are read from.
    presign
        Turns an artifact reference into a time-limited download URL.
    checkpoints
        Also serve each round's global model of a job as a checkpoint.
    read_artifact
        Serve each version's verified plaintext weights (``.../artifact``); None: no such route.
    """
    app = FastAPI(title="fedbus model-registry", docs_url=None, redoc_url=None)

    def detail(version: ModelVersion) -> dict[str, Any]:
        return {**version_body(version), "download_url": presign(version.spec.artifact)}

    @app.get("/v1/models")
    async def list_models(tenant: Tenant) -> dict[str, Any]:
        models = await store.models(tenant)
        return {
            "tenant": tenant,
            "models": [
                {
                    "name": m.name,
                    "latest_version": m.latest_version,
                    "updated_at": m.updated_at.isoformat(),
                }
                for m in models
            ],
        }

    @app.get("/v1/models/{name}/versions")
    async def list_versions(name: Name, tenant: Tenant) -> dict[str, Any]:
        versions = await store.versions(tenant, name)
        if not versions:
            raise HTTPException(404, f"no model {name!r} in tenant {tenant!r}")
        return {"tenant": tenant, "name": name, "versions": [version_body(v) for v in versions]}

    @app.get("/v1/models/{name}/versions/{version}")
    async def get_version(name: Name, version: Version, tenant: Tenant) -> dict[str, Any]:
        found = await store.version(tenant, name, version)
        if found is None:
            raise HTTPException(404, f"no version {version} of model {name!r} in tenant {tenant!r}")
        return detail(found)

    @app.get("/v1/jobs/{job_id}/model")
    async def job_model(job_id: JobId, tenant: Tenant) -> dict[str, Any]:
        found = await store.version_for_job(job_id)
        if found is None or found.spec.tenant != tenant:
            raise HTTPException(404, f"no model registered for job {job_id!r} in tenant {tenant!r}")
        return detail(found)

    if checkpoints:
        _add_checkpoint_route(app, store, presign)
    if read_artifact is not None:
        _add_artifact_route(app, store, read_artifact)
    return app


def _add_artifact_route(app: FastAPI, store: RegistryStore, read: ArtifactReader) -> None:
    @app.get("/v1/models/{name}/versions/{version}/artifact")
    async def version_artifact(name: Name, version: Version, tenant: Tenant) -> Response:
        found = await store.version(tenant, name, version)
        if found is None:
            raise HTTPException(404, f"no version {version} of model {name!r} in tenant {tenant!r}")
        job = await store.job(found.spec.job_id)
        if job is None:  # a version is registered only for a job the registry saw accepted
            raise HTTPException(500, f"version {version} of {name!r}: its job spec is missing")
        try:
            data = await read(found.spec.artifact)
        except NonRetryableError as exc:  # missing, tampered with, or not decryptable
            raise HTTPException(
                500, f"version {version} of {name!r}: its artifact is unreadable: {exc}"
            ) from exc
        except RetryableError as exc:  # the object store is away
            raise HTTPException(503, f"the artifact store is unavailable: {exc}") from exc
        # Percent-encoded: a header is Latin-1, a job's model or dataset name need not be.
        headers = {
            "X-Fedbus-Sha256": found.spec.artifact.sha256,
            "X-Fedbus-Model": quote(job.spec.model, safe=""),
            "X-Fedbus-Dataset": quote(job.spec.dataset, safe=""),
            "X-Fedbus-Model-Options": quote(json.dumps(job.spec.model_options), safe=""),
        }
        return Response(data, media_type="application/octet-stream", headers=headers)


def _add_checkpoint_route(
    app: FastAPI, store: RegistryStore, presign: Callable[[ModelRef], str]
) -> None:
    @app.get("/v1/jobs/{job_id}/checkpoints")
    async def job_checkpoints(job_id: JobId, tenant: Tenant) -> dict[str, Any]:
        job = await store.job(job_id)
        if job is None or job.tenant != tenant:
            raise HTTPException(404, f"no job {job_id!r} in tenant {tenant!r}")
        rounds = await store.rounds(job_id)
        return {
            "tenant": tenant,
            "job_id": job_id,
            "checkpoints": [
                {
                    "round": r.round,
                    "participants": list(r.participants),
                    "metrics": r.metrics,
                    "artifact": r.global_model.model_dump(mode="json"),
                    "download_url": presign(r.global_model),
                }
                for r in rounds
            ],
        }
