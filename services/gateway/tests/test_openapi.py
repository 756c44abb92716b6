"""The OpenAPI document says what the routes really answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conftest import Env

Doc = dict[str, Any]
OPERATIONS = [
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{job_id}"),
    ("post", "/v1/jobs/{job_id}/cancel"),
    ("get", "/v1/jobs/{job_id}/events"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{name}/versions"),
    ("get", "/v1/models/{name}/versions/{version}"),
    ("post", "/v1/models/{name}/versions/{version}:predict"),
]
WITH_BODY = [
    ("post", "/v1/jobs"),
    ("post", "/v1/jobs/{job_id}/cancel"),
    ("post", "/v1/models/{name}/versions/{version}:predict"),
]


@pytest.fixture
async def doc(env: Env) -> Doc:
    response = await env.client.get("/openapi.json")
    assert response.status_code == 200
    parsed: Doc = json.loads(response.text)  # as a client reads it, ints and floats apart
    return parsed


def body_model(doc: Doc, method: str, path: str, status: int) -> str:
    response = doc["paths"][path][method]["responses"][str(status)]
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


def test_every_operation_is_documented(doc: Doc) -> None:
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}

    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_lists_its_auth_errors_with_the_error_body(
    doc: Doc, method: str, path: str
) -> None:
    for status in (401, 403, 429):
        assert body_model(doc, method, path, status) == "ErrorBody"


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
def test_routes_with_a_body_list_400_413_and_422(doc: Doc, method: str, path: str) -> None:
    assert body_model(doc, method, path, 400) == "ErrorBody"
    assert body_model(doc, method, path, 413) == "ErrorBody"
    assert body_model(doc, method, path, 422) == "ValidationErrorBody"


def test_422_is_the_real_body_not_fastapis_default(doc: Doc) -> None:
    schemas = doc["components"]["schemas"]

    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "422" in op["responses"]:
                assert body_model(doc, method, path, 422) == "ValidationErrorBody"
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert set(schemas["ValidationErrorBody"]["required"]) == {"detail", "errors"}
    assert schemas["ErrorBody"]["required"] == ["detail"]


@pytest.mark.parametrize(("method", "path"), [op for op in OPERATIONS if "{" in op[1]])
def test_operations_with_path_parameters_document_404_and_422(
    doc: Doc, method: str, path: str
) -> None:
    assert body_model(doc, method, path, 404) == "ErrorBody"
    assert body_model(doc, method, path, 422) == "ValidationErrorBody"


def test_seeds_limits_are_the_exact_int64_integers(doc: Doc) -> None:
    seed = doc["components"]["schemas"]["JobSpec"]["properties"]["seed"]
    [integer] = [s for s in seed["anyOf"] if s.get("type") == "integer"]

    assert integer["maximum"] == 2**63 - 1
    assert isinstance(integer["maximum"], int)
    assert integer["minimum"] == -(2**63)
    assert isinstance(integer["minimum"], int)


def test_no_integer_schema_has_a_float_bound(doc: Doc) -> None:
    def walk(node: Any) -> list[Any]:
        if isinstance(node, dict):
            own = [node] if node.get("type") == "integer" else []
            return own + [s for v in node.values() for s in walk(v)]
        if isinstance(node, list):
            return [s for v in node for s in walk(v)]
        return []

    bounds = [(s, k) for s in walk(doc) for k in ("minimum", "maximum") if k in s]
    assert bounds, "expected some bounded integers"
    assert [(s, k) for s, k in bounds if not isinstance(s[k], int)] == []
