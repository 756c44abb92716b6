"""``/v1/jobs``: submit, list, show and cancel jobs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from fedbus.events import (
    Event,
    EventEncodeError,
    JobCancelRequested,
    JobRequested,
    codec,
    encode,
    utc_now,
)
from fedbus_gateway.api.deps import Gateway, get_gateway, owned_job, require
from fedbus_gateway.api.params import JobId
from fedbus_gateway.api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    INVALID,
    NOT_FOUND,
    CancelRequest,
    ErrorBody,
    JobList,
    JobRequest,
    JobSubmitted,
    Responses,
)
from fedbus_gateway.auth import Principal
from fedbus_gateway.jobs import JobView, ViewStatus, new_view
from fedbus_gateway.settings import Scope

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
UNAVAILABLE: Responses = {
    503: {"model": ErrorBody, "description": "The event bus did not take the event."}
}
KEY_REUSED: Responses = {
    409: {"model": ErrorBody, "description": "The idempotency key was used for another spec."}
}
ENDED: Responses = {409: {"model": ErrorBody, "description": "The job has already ended."}}
PUBLISH_TIMEOUT_S = 15.0


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobSubmitted,
    summary="Submit a training job",
    responses={
        **AUTH_ERRORS,
        **BODY_ERRORS,
        **KEY_REUSED,
        **UNAVAILABLE,
    },
)
async def submit_job(
    body: JobRequest,
    gateway: GatewayDep,
    principal: Annotated[Principal, Depends(require(Scope.JOBS_WRITE))],
) -> JobSubmitted:
    """Publish `job.requested` for a new job id; the same idempotency key returns the same job."""
    job_id = str(uuid.uuid4())
    event = JobRequested.create(
        source="gateway", job_id=job_id, tenant=principal.tenant, spec=body.spec,
        idempotency_key=body.idempotency_key,
    )  # fmt: skip
    _refuse_unpublishable(event)  # before the key is claimed: nothing reaches PostgreSQL
    view = new_view(
        job_id=job_id, tenant=principal.tenant, spec=body.spec, at=utc_now(),
        key=body.idempotency_key,
    )  # fmt: skip
    stored = await gateway.jobs.claim(view)
    if stored.job_id != job_id:
        if stored.spec is not None and stored.spec != body.spec:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"idempotency key '{body.idempotency_key}' was used for job "
                f"'{stored.job_id}' with a different spec",
            )
        return JobSubmitted.of(stored.job_id, stored.status)
    await _publish_or_forget(gateway, event, job_id)
    log.info("job %s requested by %s", job_id, principal.name)
    return JobSubmitted.of(job_id, ViewStatus.REQUESTED)


def _refuse_unpublishable(event: JobRequested) -> None:
    """413 when ``event`` can never be published: it encodes larger than the bus takes."""
    try:
        encode(event)  # JSON: the larger wire format, so what fits here fits in Avro too
    except EventEncodeError as exc:
        size, limit = len(event.model_dump_json().encode()), codec.MAX_EVENT_BYTES
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"this job request makes a {event.type} event of {size:,} bytes; the event bus "
            f"takes at most {limit:,}",
        ) from exc


async def _publish_or_forget(gateway: Gateway, event: Event, job_id: str | None) -> None:
    try:
        await asyncio.wait_for(gateway.publisher.publish(event), PUBLISH_TIMEOUT_S)
    except Exception as exc:
        # The boundary: whatever the bus raised, the caller gets a 503 and can retry.
        log.exception("cannot publish %s for job %s", event.type, event.job_id)
        if job_id is not None:
            await gateway.jobs.forget(job_id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event bus did not take {event.type}; try again",
        ) from exc


@router.get(
    "",
    response_model=JobList,
    summary="List the caller's jobs",
    responses={**AUTH_ERRORS, **INVALID},
)
async def list_jobs(
    gateway: GatewayDep,
    principal: Annotated[Principal, Depends(require(Scope.JOBS_READ))],
    status_: Annotated[ViewStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    """The caller's tenant's jobs, newest first, optionally only those with `status`."""
    return JobList(jobs=await gateway.jobs.list(principal.tenant, status=status_, limit=limit))


@router.get(
    "/{job_id}",
    response_model=JobView,
    summary="Show a job",
    responses={**AUTH_ERRORS, **NOT_FOUND, **INVALID},
)
async def show_job(
    job_id: JobId,
    gateway: GatewayDep,
    principal: Annotated[Principal, Depends(require(Scope.JOBS_READ))],
) -> JobView:
    """Status, current round, rounds completed, latest metrics, participants, reasons."""
    return await owned_job(gateway, principal, job_id)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobSubmitted,
    summary="Cancel a job",
    responses={
        **AUTH_ERRORS,
        **NOT_FOUND,
        **BODY_ERRORS,
        **ENDED,
        **UNAVAILABLE,
    },
)
async def cancel_job(
    job_id: JobId,
    gateway: GatewayDep,
    principal: Annotated[Principal, Depends(require(Scope.JOBS_WRITE))],
    body: CancelRequest | None = None,
) -> JobSubmitted:
    """Publish `job.cancel.requested`; the job ends with status `cancelled`."""
    view = await owned_job(gateway, principal, job_id)
    if view.ended:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job '{job_id}' already ended ({view.status.value})"
        )
    event = JobCancelRequested.create(
        source="gateway", job_id=job_id, tenant=principal.tenant, requested_by=principal.name,
        reason=body.reason if body is not None else None,
    )  # fmt: skip
    await _publish_or_forget(gateway, event, None)
    return JobSubmitted.of(job_id, view.status)
