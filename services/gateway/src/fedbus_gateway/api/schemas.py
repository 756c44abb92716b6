"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from fedbus.events import JobSpec, StorableText
from fedbus.jobspec import check_spec, spec_json_schema, spec_problems
from fedbus_gateway.jobs import JobView, ViewStatus

__all__ = [
    "AUTH_ERRORS",
    "BODY_ERRORS",
    "INVALID",
    "NOT_FOUND",
    "CancelRequest",
    "ErrorBody",
    "FieldError",
    "JobLinks",
    "JobList",
    "JobRequest",
    "JobSubmitted",
    "Responses",
    "ValidationErrorBody",
]


class JobRequest(BaseModel):
    """``POST /v1/jobs``: a job spec and an optional idempotency key.

    The spec is checked by :func:`fedbus.jobspec.check_spec` (no unknown field, no type
    coercion, the semantic rules): every problem is one 422 error at its path, ``spec.rounds``.
    """

    model_config = ConfigDict(extra="forbid")

    spec: Annotated[JobSpec, WithJsonSchema(spec_json_schema())]
    idempotency_key: StorableText | None = Field(
        default=None, min_length=1, max_length=200, strict=True
    )

    @field_validator("spec", mode="before")
    @classmethod
    def _check_spec(cls, raw: object) -> object:
        # A JobSpec built in Python has its types checked already: only the rules remain.
        problems = spec_problems(raw) if isinstance(raw, JobSpec) else check_spec(raw)
        if problems:
            # Raised here, the errors join the request's others at ("body", "spec", ...).
            raise ValidationError.from_exception_data(
                "spec",
                [InitErrorDetails(type=PydanticCustomError(p.code.value, "{message}",
                                                           {"message": p.message}),
                                  loc=p.loc[1:], input=raw)
                 for p in problems],
            )  # fmt: skip
        return raw


class JobLinks(BaseModel):
    """Where to follow a job."""

    self: str
    events: str
    cancel: str


class JobSubmitted(BaseModel):
    """The answer to a job submission or cancellation (202)."""

    job_id: str
    status: ViewStatus
    links: JobLinks

    @classmethod
    def of(cls, job_id: str, status: ViewStatus) -> JobSubmitted:
        """The body for ``job_id`` with its links."""
        base = f"/v1/jobs/{job_id}"
        links = JobLinks(self=base, events=f"{base}/events", cancel=f"{base}/cancel")
        return cls(job_id=job_id, status=status, links=links)


class JobList(BaseModel):
    """``GET /v1/jobs``: the caller's jobs, newest first."""

    jobs: list[JobView]


class CancelRequest(BaseModel):
    """``POST /v1/jobs/{id}/cancel``: an optional reason."""

    reason: StorableText | None = Field(default=None, max_length=1000)


class ErrorBody(BaseModel):
    """Every error: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    """One failing field of a request."""

    field: str
    message: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: ``detail`` names every failing field; ``errors`` lists them one by one."""

    detail: str
    errors: list[FieldError]


def _doc(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


Responses = dict[int | str, dict[str, Any]]
"""OpenAPI ``responses`` of a route."""

AUTH_ERRORS: Responses = {
    401: _doc("No API key, or an unknown one."),
    403: _doc("The API key lacks the scope this route needs (named in `detail`)."),
    429: _doc(
        "The key's rate limit is spent, or the caller's address sent too many unknown keys "
        "(then even a right key waits); see the `Retry-After` header."
    ),
}
NOT_FOUND: Responses = {404: _doc("No such job for the caller's tenant.")}
INVALID: Responses = {
    422: _doc(
        "A parameter or body field is invalid: `detail` names each one, `errors` lists them.",
        ValidationErrorBody,
    )
}
BODY_ERRORS: Responses = {
    400: _doc("The body is not JSON (not UTF-8, not parseable, nested too deeply): `detail` "
              "says what and where."),
    413: _doc("The body is larger than the gateway's limit (`FEDBUS_GATEWAY_MAX_BODY_BYTES`, "
              "1 MiB by default); refused before the API key is checked."),
    **INVALID,
}  # fmt: skip
"""What a route that reads a JSON body can answer about it."""
