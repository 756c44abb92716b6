"""``/v1/models...`` are the registry's answers for the caller's tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import Env

VERSION = {"name": "mlp-digits", "version": 1, "sha256": "ab" * 32, "download_url": "http://x/y"}


async def test_models_are_asked_for_the_callers_tenant(env: Env) -> None:
    env.registry.models[("acme", "mlp-digits")] = [VERSION]
    env.registry.models[("globex", "cnn-digits")] = [{**VERSION, "name": "cnn-digits"}]

    acme = await env.client.get("/v1/models", headers=env.auth("acme"))
    globex = await env.client.get("/v1/models", headers=env.auth("globex"))

    assert acme.json() == {"models": [{"name": "mlp-digits"}]}
    assert globex.json() == {"models": [{"name": "cnn-digits"}]}
    assert [r.url.params["tenant"] for r in env.registry.requests] == ["acme", "globex"]


async def test_versions_and_one_version_pass_through(env: Env) -> None:
    env.registry.models[("acme", "mlp-digits")] = [VERSION]

    versions = await env.client.get("/v1/models/mlp-digits/versions", headers=env.auth("acme"))
    one = await env.client.get("/v1/models/mlp-digits/versions/1", headers=env.auth("acme"))

    assert versions.json() == {"versions": [VERSION]}
    assert one.json() == VERSION
    assert env.registry.requests[-1].url.path == "/v1/models/mlp-digits/versions/1"


async def test_registry_404s_pass_through_and_other_tenants_models_are_404(env: Env) -> None:
    env.registry.models[("acme", "mlp-digits")] = [VERSION]

    missing_version = await env.client.get(
        "/v1/models/mlp-digits/versions/7", headers=env.auth("acme")
    )
    not_mine = await env.client.get("/v1/models/mlp-digits/versions", headers=env.auth("globex"))

    assert missing_version.status_code == 404
    assert missing_version.json() == {"detail": "no version 7"}
    assert not_mine.status_code == 404


async def test_unreachable_registry_is_503_saying_so(env: Env) -> None:
    env.registry.down = True

    response = await env.client.get("/v1/models", headers=env.auth("acme"))

    assert response.status_code == 503
    assert "registry" in response.json()["detail"]
    assert "unreachable" in response.json()["detail"]


async def test_models_need_models_read(env: Env) -> None:
    response = await env.client.get("/v1/models", headers=env.auth("acme-reader"))

    assert response.status_code == 403
    assert "models:read" in response.json()["detail"]
    assert env.registry.requests == []
