"""``/v1/models``: the model registry's read API, for the caller's tenant."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import JSONResponse

from fedbus_gateway.adapters.registry import RegistryReply, RegistryUnavailableError
from fedbus_gateway.api.deps import Gateway, get_gateway, require
from fedbus_gateway.api.params import VERSION_SEGMENT, ModelName, ModelVersion
from fedbus_gateway.api.schemas import AUTH_ERRORS, INVALID, ErrorBody
from fedbus_gateway.auth import Principal
from fedbus_gateway.settings import Scope

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
Reader = Annotated[Principal, Depends(require(Scope.MODELS_READ))]
_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    404: {"model": ErrorBody, "description": "No such model or version (from the registry)."},
    502: {"model": ErrorBody, "description": "The registry failed."},
    503: {"model": ErrorBody, "description": "The registry is unreachable."},
}
_PARAM_ERRORS = {**_ERRORS, **INVALID}


@router.get("", summary="List the tenant's models", responses=_ERRORS)
async def list_models(gateway: GatewayDep, principal: Reader) -> JSONResponse:
    """The registry's `GET /v1/models?tenant=<caller's tenant>`."""
    return await _relay(gateway.registry.models(principal.tenant))


@router.get("/{name}/versions", summary="List a model's versions", responses=_PARAM_ERRORS)
async def list_versions(name: ModelName, gateway: GatewayDep, principal: Reader) -> JSONResponse:
    """The registry's `GET /v1/models/{name}/versions?tenant=<caller's tenant>`."""
    return await _relay(gateway.registry.versions(principal.tenant, name))


@router.get(
    f"/{{name}}/versions/{VERSION_SEGMENT}",
    summary="Show a model version (with a presigned `download_url`)",
    responses=_PARAM_ERRORS,
)
async def show_version(
    name: ModelName, version: ModelVersion, gateway: GatewayDep, principal: Reader
) -> JSONResponse:
    """The registry's `GET /v1/models/{name}/versions/{v}?tenant=<caller's tenant>`."""
    return await _relay(gateway.registry.version(principal.tenant, name, version))


async def _relay(call: Awaitable[RegistryReply]) -> JSONResponse:
    try:
        reply = await call
    except RegistryUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if reply.status_code >= 500:
        detail = f"the model registry answered {reply.status_code}"
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail)
    return JSONResponse(reply.body, status_code=reply.status_code)
