"""The model-registry read API, called over HTTP with the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["RegistryClient", "RegistryReply", "RegistryUnavailableError"]


class RegistryUnavailableError(Exception):
    """The registry did not answer (connection refused, timeout)."""


@dataclass(frozen=True)
class RegistryReply:
    """The registry's status code and JSON body, passed through to the caller."""

    status_code: int
    body: Any


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

    async def _get(self, path: str, tenant: str) -> RegistryReply:
        try:
            response = await self._client.get(path, params={"tenant": tenant})
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"model registry at {self.base_url} is unreachable: {type(exc).__name__}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        return RegistryReply(response.status_code, body)
