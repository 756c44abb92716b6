"""Every error the app answers has ``{"detail": str}`` (422 adds ``errors``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException

from fedbus_gateway.api.schemas import ErrorBody, FieldError, ValidationErrorBody

__all__ = ["add_error_handlers", "allowed_methods"]


def add_error_handlers(app: FastAPI) -> None:
    """Answer Starlette's and FastAPI's errors in the shapes the OpenAPI document names."""
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path``, sorted (for ``Allow``)."""
    methods: set[str] = set()
    # FastAPI keeps an included router as one entry of app.routes; this flattens them.
    for route in iter_route_contexts(app.routes):
        if route.methods and route.path_regex is not None and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    detail = str(exc.detail)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # Starlette names only the methods of the first route whose path matched.
        allowed = allowed_methods(request.app, request.url.path)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    elif exc.status_code == status.HTTP_400_BAD_REQUEST and exc.__cause__ is not None:
        # FastAPI's body reader says only "There was an error parsing the body".
        detail = _unparsable(exc.__cause__)
    body = ErrorBody(detail=detail).model_dump()
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _unparsable(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8: {cause.reason} at position {cause.start}"
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON: it is nested too deeply"
    return f"the body is not valid JSON: {cause}"


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    broken = next((e for e in problems if e.get("type") == "json_invalid"), None)
    if broken is not None:
        detail = f"the body is not valid JSON: {_json_reason(broken)}"
        return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=400)
    errors = [
        FieldError(field=_field(err.get("loc", ())), message=str(err.get("msg", "")),
                   type=str(err.get("type", "")))
        for err in problems
    ]  # fmt: skip
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    body = ValidationErrorBody(detail=detail, errors=errors)
    return JSONResponse(body.model_dump(), status_code=422)


def _json_reason(error: dict[str, Any]) -> str:
    reason = str((error.get("ctx") or {}).get("error", "cannot parse it"))
    loc = error.get("loc", ())
    position = loc[-1] if isinstance(loc, list | tuple) and loc else None
    return f"{reason} at position {position}" if isinstance(position, int) else reason


def _field(loc: object) -> str:
    parts = [str(p) for p in loc] if isinstance(loc, list | tuple) else [str(loc)]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"
