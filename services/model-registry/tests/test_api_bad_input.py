"""Parameters the registry's PostgreSQL tables cannot hold are 422s naming them: the store is
never asked with a version outside ``integer`` or text with NUL or an unpaired surrogate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fedbus.events import JobCompleted
from fedbus_registry.api import build_app
from fedbus_registry.versions import JobInfo, ModelSummary, ModelVersion, RoundRecord

from .fakes import FakeRegistryStore

NUL = "contains a NUL character, which cannot be stored"


class WatchedStore(FakeRegistryStore):
    """The fake store, noting every read the API makes."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[Any, ...]] = []

    async def job(self, job_id: str) -> JobInfo | None:
        self.asked.append(("job", job_id))
        return await super().job(job_id)

    async def rounds(self, job_id: str) -> list[RoundRecord]:
        self.asked.append(("rounds", job_id))
        return await super().rounds(job_id)

    async def completion(self, job_id: str) -> JobCompleted | None:
        self.asked.append(("completion", job_id))
        return await super().completion(job_id)

    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        self.asked.append(("version_for_job", job_id))
        return await super().version_for_job(job_id)

    async def models(self, tenant: str) -> list[ModelSummary]:
        self.asked.append(("models", tenant))
        return await super().models(tenant)

    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        self.asked.append(("versions", tenant, name))
        return await super().versions(tenant, name)

    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        self.asked.append(("version", tenant, name, number))
        return await super().version(tenant, name, number)


@pytest.fixture
def store() -> WatchedStore:
    return WatchedStore()


@pytest.fixture
async def client(store: WatchedStore) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(store, presign=lambda ref: "http://minio.test/x", checkpoints=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        yield http


def failing(response: httpx.Response) -> list[tuple[str, ...]]:
    return [tuple(str(p) for p in e["loc"]) for e in response.json()["detail"]]


@pytest.mark.parametrize("version", ["2147483648", "0", "-1", "9" * 30])
async def test_a_version_outside_postgres_integer_is_422_and_the_store_is_not_asked(
    client: httpx.AsyncClient, store: WatchedStore, version: str
) -> None:
    response = await client.get(f"/v1/models/m/versions/{version}", params={"tenant": "acme"})

    assert response.status_code == 422
    assert failing(response) == [("path", "version")]
    assert store.asked == []


async def test_the_largest_integer_version_is_looked_up(
    client: httpx.AsyncClient, store: WatchedStore
) -> None:
    response = await client.get("/v1/models/m/versions/2147483647", params={"tenant": "acme"})

    assert response.status_code == 404
    assert store.asked == [("version", "acme", "m", 2**31 - 1)]


@pytest.mark.parametrize(
    ("path", "tenant", "loc"),
    [
        ("/v1/models", "ac\x00me", ("query", "tenant")),
        ("/v1/models/m%00/versions", "acme", ("path", "name")),
        ("/v1/models/m%00/versions/1", "acme", ("path", "name")),
        ("/v1/jobs/j%00/model", "acme", ("path", "job_id")),
        ("/v1/jobs/j%00/checkpoints", "acme", ("path", "job_id")),
        ("/v1/jobs/j/checkpoints", "\x00", ("query", "tenant")),
    ],
)
async def test_text_with_a_nul_is_422_naming_the_parameter_and_the_store_is_not_asked(
    client: httpx.AsyncClient, store: WatchedStore, path: str, tenant: str, loc: tuple[str, ...]
) -> None:
    response = await client.get(path, params={"tenant": tenant})

    assert response.status_code == 422
    assert failing(response) == [loc]
    assert response.json()["detail"][0]["msg"] == NUL
    assert store.asked == []
