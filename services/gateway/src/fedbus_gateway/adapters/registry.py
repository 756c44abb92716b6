"""The model-registry read API, called over HTTP with the caller's tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import httpx

__all__ = ["RegistryArtifact", "RegistryClient", "RegistryReply", "RegistryUnavailableError"]


class RegistryUnavailableError(Exception):
    """The registry did not answer (connection refused, timeout)."""


@dataclass(frozen=True)
class RegistryReply:
    """The registry's status code and JSON body, passed through to the caller."""

    status_code: int
    body: Any


@dataclass(frozen=True)
class RegistryArtifact:
    """A version's plaintext weights as the registry served them, with its job's facts.

    Attributes
    ----------
    data
        The safetensors bytes (the registry decrypted them and checked size and SHA-256).
    sha256
        The registered SHA-256 the registry says ``data`` has (the caller checks it again).
    model
        The job spec's ``model`` (the name the executor builds it by).
    dataset
        The job spec's ``dataset``.
    model_options
        The job spec's ``model_options`` (empty from a registry that does not send them).
    """

    data: bytes
    sha256: str
    model: str
    dataset: str
    model_options: dict[str, Any] = field(default_factory=dict)


class RegistryClient:
    """GETs on ``FEDBUS_REGISTRY_URL``: ``/v1/models...?tenant=T``.

    Parameters
    ----------
    base_url
        The registry's HTTP root.
    timeout_s
        Per-request timeout.
    transport
        An httpx transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, transport=transport
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def models(self, tenant: str) -> RegistryReply:
        """``GET /v1/models?tenant=T``."""
        return await self._get("/v1/models", tenant)

    async def versions(self, tenant: str, name: str) -> RegistryReply:
        """``GET /v1/models/{name}/versions?tenant=T``."""
        return await self._get(f"/v1/models/{quote(name, safe='')}/versions", tenant)

    async def version(self, tenant: str, name: str, version: int) -> RegistryReply:
        """``GET /v1/models/{name}/versions/{v}?tenant=T``."""
        return await self._get(f"/v1/models/{quote(name, safe='')}/versions/{version}", tenant)

    async def artifact(
        self, tenant: str, name: str, version: int
    ) -> RegistryArtifact | RegistryReply:
        """``GET /v1/models/{name}/versions/{v}/artifact?tenant=T``: the weights, or the
        registry's error reply (404 for another tenant's model, as for the other routes)."""
        path = f"/v1/models/{quote(name, safe='')}/versions/{version}/artifact"
        response = await self._send(path, tenant)
        if response.status_code != 200:
            return _reply(response)
        headers = response.headers
        missing = [h for h in _ARTIFACT_HEADERS if h not in headers]
        if missing:
            return RegistryReply(502, {"detail": f"the registry's artifact lacks {missing}"})
        try:
            options = json.loads(unquote(headers.get("x-fedbus-model-options", "%7B%7D")))
        except ValueError:
            options = None
        if not isinstance(options, dict):
            return RegistryReply(
                502, {"detail": "the registry's model options are not a JSON object"}
            )
        return RegistryArtifact(
            data=response.content,
            sha256=headers["x-fedbus-sha256"].lower(),
            model=unquote(headers["x-fedbus-model"]),
            dataset=unquote(headers["x-fedbus-dataset"]),
            model_options=options,
        )

    async def _get(self, path: str, tenant: str) -> RegistryReply:
        return _reply(await self._send(path, tenant))

    async def _send(self, path: str, tenant: str) -> httpx.Response:
        try:
            return await self._client.get(path, params={"tenant": tenant})
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"model registry at {self.base_url} is unreachable: {type(exc).__name__}"
            ) from exc


_ARTIFACT_HEADERS = ("x-fedbus-sha256", "x-fedbus-model", "x-fedbus-dataset")


def _reply(response: httpx.Response) -> RegistryReply:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return RegistryReply(response.status_code, body)
