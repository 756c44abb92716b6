"""The OpenAPI document, as exact as the models and parameters that define it."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

__all__ = ["api_routes", "install_openapi"]

REF = "#/components/schemas/{model}"
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` write integer bounds as the exact integers the models hold.

    FastAPI's OpenAPI model types ``maximum`` as a float, so ``Int64``'s ``2**63 - 1``
    came out as ``9.223372036854776e18`` (= ``2**63``): a looser limit than the server
    keeps, which clients and schemathesis then trust. Pydantic's own schema of each
    body and response model, and of each parameter, has the exact integer; it is copied
    back over the float. An optional parameter is also written without ``null``: on the
    wire it is absent, never null. The fixes are idempotent.
    """

    build = app.openapi
    fixed: list[int] = []  # ids of documents already fixed (FastAPI caches and may rebuild)

    def openapi() -> dict[str, Any]:
        doc = build()
        if id(doc) not in fixed:
            components = doc.get("components", {}).get("schemas", {})
            for name, exact in _model_schemas(app).items():
                if name in components:
                    _copy_bounds(components[name], exact)
            _parameter_bounds(app, doc)
            _integral_bounds(doc)
            _no_null_parameters(doc)
            fixed[:] = [id(doc)]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _model_schemas(app: FastAPI) -> dict[str, Any]:
    """Pydantic's JSON schema of every model the routes take or return, by component name."""
    schemas: dict[str, Any] = {}
    for annotation, mode in _annotations(app):
        schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode=mode)
        schemas.update(schema.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            schemas[annotation.__name__] = schema
    return schemas


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route of ``app``, included routers' too, with its prefixed path and methods.

    FastAPI keeps an included router as one entry of ``app.routes``; its own
    ``iter_route_contexts`` (what it builds the OpenAPI document from) flattens them.
    """
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


Mode = typing.Literal["validation", "serialization"]


def _annotations(app: FastAPI) -> Iterator[tuple[Any, Mode]]:
    for route in api_routes(app):
        for param in route.dependant.body_params:
            yield param.field_info.annotation, "validation"
        if route.response_model is not None:
            yield route.response_model, "serialization"


def _parameter_bounds(app: FastAPI, doc: dict[str, Any]) -> None:
    """The same for path, query, header and cookie parameters (``Last-Event-ID``)."""
    for route in api_routes(app):
        dependant = route.dependant
        params = [*dependant.path_params, *dependant.query_params, *dependant.header_params,
                  *dependant.cookie_params]  # fmt: skip
        exact = {p.alias: _adapter(p.field_info) for p in params}
        for method in route.methods:
            operation = doc["paths"].get(route.path_format, {}).get(method.lower(), {})
            for documented in operation.get("parameters", []):
                if documented["name"] in exact:
                    schema = exact[documented["name"]].json_schema(ref_template=REF)
                    _copy_bounds(documented.get("schema"), schema)


def _adapter(info: FieldInfo) -> TypeAdapter[Any]:
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def _copy_bounds(generated: Any, exact: Any) -> None:
    """Walk both schemas side by side; where a bound is the same number, take the exact one."""
    if isinstance(generated, dict) and isinstance(exact, dict):
        for key in BOUNDS:
            if isinstance(exact.get(key), int) and generated.get(key) == float(exact[key]):
                generated[key] = exact[key]
        for key, value in generated.items():
            if key in exact:
                _copy_bounds(value, exact[key])
    elif isinstance(generated, list) and isinstance(exact, list):
        for left, right in zip(generated, exact, strict=False):
            _copy_bounds(left, right)


def _integral_bounds(node: Any) -> None:
    """Write a whole-numbered float bound of an integer schema as an integer (``1000.0``)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                    node[key] = int(value)
        for value in node.values():
            _integral_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integral_bounds(value)


def _no_null_parameters(doc: dict[str, Any]) -> None:
    """An optional parameter is absent, never ``null``: drop ``null`` from its schema.

    FastAPI writes ``int | None`` as ``anyOf: [integer, null]``, but a header or query value
    is text: ``Last-Event-ID: null`` is refused, rightly, so the document must not offer it.
    """
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
                if "anyOf" in schema and len(options) < len(schema["anyOf"]):
                    del schema["anyOf"]
                    if len(options) == 1:
                        schema.update(options[0])
                    else:
                        schema["anyOf"] = options
