"""The FastAPI application: routers, error bodies, the edge's limits, OpenAPI at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI

from fedbus_gateway.api.deps import Gateway
from fedbus_gateway.api.errors import add_error_handlers
from fedbus_gateway.api.middleware import BodyLimitMiddleware
from fedbus_gateway.api.openapi import install_openapi
from fedbus_gateway.api.routes import events, jobs, models, predict
from fedbus_gateway.settings import DEFAULT_MAX_BODY_BYTES

__all__ = ["create_app"]

DESCRIPTION = """\
The public API of fedbus: submit federated or centralized training jobs, follow them live,
cancel them, and read the models they produced.

Authenticate with an API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`, or,
where the gateway trusts an OIDC issuer, with a JWT from it as `Authorization: Bearer <token>`.
Scopes: `jobs:write` (submit, cancel), `jobs:read` (list, show, events), `models:read`,
`models:predict` (`POST /v1/models/{name}/versions/{version}:predict`).
A tenant sees only its own jobs and models.

Every error has the body `{"detail": "<what went wrong>"}`; a 422 adds `errors`, one entry
per failing field. A body that is not JSON gets 400; a request body over the gateway's limit
(`FEDBUS_GATEWAY_MAX_BODY_BYTES`, 1 MiB by default) gets 413 before the key is checked. A
method a path does not serve gets 405 with an `Allow` header naming those it does.
"""


def create_app(gateway: Gateway, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The gateway's app over ``gateway``'s ports (``Service`` adds the ops routes).

    Request bodies over ``max_body_bytes`` are refused with 413 before anything else runs.
    """
    app = FastAPI(title="fedbus gateway", version="1", description=DESCRIPTION, docs_url="/docs")
    app.state.gateway = gateway
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(models.router)
    app.include_router(predict.router)
    add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    install_openapi(app)
    return app
