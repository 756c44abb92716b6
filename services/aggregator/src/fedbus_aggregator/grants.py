"""Grants: each selected trainer's ``round.assigned``, with presigned URLs for its objects only.

A trainer holds no MinIO credentials. For every client a round still waits for, the
aggregator presigns two requests with its own credentials: a GET of the round's global
model (none in round 1) and a PUT of the client's one update key
(:func:`fedbus.storage.update_key`). Both expire at the deadline plus a grace; the server
refuses any other key, method, or a request after that (403). The URLs travel on the
trainer's own topic ``round.assigned.<client_id>``, which no other trainer may read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal, Protocol

from fedbus.events import RoundAssigned, RoundStarted, check_client_id, child_traceparent
from fedbus.storage import update_key

__all__ = ["MAX_EXPIRY_S", "AssignedTopics", "Presigner", "assignments", "grant_expiry_s"]

log = logging.getLogger(__name__)

MAX_EXPIRY_S = 7 * 24 * 3600
"""The longest a SigV4 presigned URL may live (seven days)."""


class Presigner(Protocol):
    """Signs one request on one object key (MinIO through boto3 in production)."""

    def presign(
        self, operation: Literal["get_object", "put_object"], key: str, *, expires_s: int
    ) -> str:
        """A URL that performs ``operation`` on ``key`` for ``expires_s`` seconds."""


class AssignedTopics(Protocol):
    """Makes sure each addressed trainer's ``round.assigned.<client_id>`` topic exists."""

    async def ensure(self, values: Iterable[str]) -> list[str]:
        """Create the missing topics of ``values``; returns the names created."""


def grant_expiry_s(*, deadline: datetime, now: datetime, grace_s: float) -> int:
    """Seconds from ``now`` until ``deadline + grace_s``: at least 1, at most seven days."""
    seconds = math.ceil((deadline - now).total_seconds() + grace_s)
    return max(1, min(MAX_EXPIRY_S, seconds))


def assignments(
    event: RoundStarted,
    clients: Iterable[str],
    *,
    presigner: Presigner,
    now: datetime,
    grace_s: float,
    source: str = "aggregator",
) -> list[RoundAssigned]:
    """One ``round.assigned`` per client of ``clients``, with its grants.

    A client id that cannot name a topic (:func:`fedbus.events.check_client_id`) gets none:
    it is logged and that client misses the round.
    """
    expires_s = grant_expiry_s(deadline=event.deadline, now=now, grace_s=grace_s)
    expires_at = now + timedelta(seconds=expires_s)
    model_url = (
        presigner.presign("get_object", event.global_model.object_key, expires_s=expires_s)
        if event.global_model is not None
        else None
    )
    out: list[RoundAssigned] = []
    for client in clients:
        try:
            check_client_id(client)
        except ValueError as exc:
            log.warning("no grant for client %r: %s", client, exc)
            continue
        key = update_key(event.job_id, event.round, client)
        out.append(
            RoundAssigned.create(
                source=source,
                job_id=event.job_id,
                traceparent=child_traceparent(event.traceparent),
                round=event.round,
                client_id=client,
                started_event_id=event.event_id,
                deadline=event.deadline,
                global_model=event.global_model,
                model=event.model,
                model_options=event.model_options,
                dataset=event.dataset,
                training=event.training,
                strategy=event.strategy,
                privacy=event.privacy,
                lora=event.lora,
                seed=event.seed,
                global_model_url=model_url,
                update_url=presigner.presign("put_object", key, expires_s=expires_s),
                update_key=key,
                urls_expire_at=expires_at,
            )
        )
    return out
