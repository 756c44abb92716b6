"""The FastAPI application: routers, error bodies, OpenAPI at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fedbus_gateway.api.deps import Gateway
from fedbus_gateway.api.routes import events, jobs, models
from fedbus_gateway.api.schemas import FieldError, ValidationErrorBody

__all__ = ["create_app"]

DESCRIPTION = """\
The public API of fedbus: submit federated or centralized training jobs, follow them live,
cancel them, and read the models they produced.

Authenticate with an API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Scopes: `jobs:write` (submit, cancel), `jobs:read` (list, show, events), `models:read`.
A tenant sees only its own jobs and models.
"""


def create_app(gateway: Gateway) -> FastAPI:
    """The gateway's app over ``gateway``'s ports (``Service`` adds the ops routes)."""
    app = FastAPI(title="fedbus gateway", version="1", description=DESCRIPTION, docs_url="/docs")
    app.state.gateway = gateway
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(models.router)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    return app


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        FieldError(field=_field(err.get("loc", ())), message=str(err.get("msg", "")),
                   type=str(err.get("type", "")))
        for err in exc.errors()
    ]  # fmt: skip
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    body = ValidationErrorBody(detail=detail, errors=errors)
    return JSONResponse(body.model_dump(), status_code=422)


def _field(loc: object) -> str:
    parts = [str(p) for p in loc] if isinstance(loc, list | tuple) else [str(loc)]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"
