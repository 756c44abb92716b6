"""Round bookkeeping, pure: who was asked, who reported, and when a round may close.

A round opens with ``round.started`` (selected clients, ``min_clients``, deadline). Each
update is recorded once per client, accepted or rejected with a reason. The round is
aggregated when every selected client has reported (accepted or rejected), or at the
deadline when at least ``min_clients`` were accepted; with fewer it expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from fedbus.events import DroppedClient, ModelRef, RoundCompleted, RoundStarted

__all__ = [
    "Admission",
    "Decision",
    "RejectCode",
    "RoundState",
    "RoundStatus",
    "UpdateRecord",
    "UpdateStatus",
    "weighted_train_metrics",
]


class RoundStatus(StrEnum):
    """Where a round is: waiting for updates, done, or closed without enough updates."""

    OPEN = "open"
    AGGREGATED = "aggregated"
    EXPIRED = "expired"


class UpdateStatus(StrEnum):
    """What became of one client's update."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PENDING = "pending"
    """Arrived before its ``round.started``; judged when the round opens."""


class RejectCode(StrEnum):
    """Why an update (or a selected client) was not aggregated: ``DroppedClient.code``."""

    NOT_SELECTED = "not_selected"
    ARTIFACT_MISSING = "artifact_missing"
    INTEGRITY = "integrity"
    INVALID_UPDATE = "invalid_update"
    DEADLINE = "deadline"
    DECLINED = "declined"
    NOT_GRANTED = "not_granted"
    OVERSIZED = "oversized"


NOT_ITS_OBJECT = frozenset(
    {
        RejectCode.NOT_GRANTED,
        RejectCode.ARTIFACT_MISSING,
        RejectCode.INTEGRITY,
        RejectCode.OVERSIZED,
    }
)
"""Rejections that say the event did not describe the object its client wrote (another key
than the one granted, nothing at the granted key yet, other bytes than the event's size and
SHA-256, or a size no update of the model can have). Any trainer may send an
``update.submitted`` naming another client; such a rejection therefore does not settle the
client: its own event, coming later, is still judged."""


class Admission(StrEnum):
    """First look at an update, before its tensors are read."""

    CHECK = "check"
    """Selected and new: read and validate it."""
    DUPLICATE = "duplicate"
    """This client already reported in this round: ignore it."""
    NOT_SELECTED = "not_selected"
    """The client was not asked: reject it."""
    CLOSED = "closed"
    """The round is aggregated: nothing more goes in."""


class Decision(StrEnum):
    """What to do with a round now."""

    WAIT = "wait"
    AGGREGATE = "aggregate"
    EXPIRE = "expire"


@dataclass(frozen=True)
class UpdateRecord:
    """One client's update as recorded (``code``/``reason`` set when rejected)."""

    client_id: str
    ref: ModelRef
    num_samples: int
    metrics: Mapping[str, float]
    status: UpdateStatus
    code: RejectCode | None = None
    reason: str | None = None

    def rejected(self, code: RejectCode, reason: str) -> UpdateRecord:
        """This record, rejected with ``code`` and ``reason``."""
        return replace(self, status=UpdateStatus.REJECTED, code=code, reason=reason)

    def accepted(self) -> UpdateRecord:
        """This record, accepted."""
        return replace(self, status=UpdateStatus.ACCEPTED, code=None, reason=None)


@dataclass(frozen=True)
class RoundState:
    """A round of a job as the aggregator knows it.

    ``version`` grows with every ``round.started`` of the same (job, round): orchestration's
    retries replace the selection and deadline, and an aggregation decided under an older
    version does not commit.
    """

    job_id: str
    round: int
    started: RoundStarted
    status: RoundStatus = RoundStatus.OPEN
    version: int = 1
    updates: Mapping[str, UpdateRecord] = field(default_factory=dict)
    result: RoundCompleted | None = None
    server_state: ModelRef | None = None
    published: bool = False

    @classmethod
    def open(cls, event: RoundStarted) -> RoundState:
        """A new open round from its ``round.started``."""
        return cls(job_id=event.job_id, round=event.round, started=event)

    @property
    def selected(self) -> tuple[str, ...]:
        """The clients asked to train, in the event's order."""
        return tuple(self.started.selected_clients)

    @property
    def min_clients(self) -> int:
        """Fewest accepted updates the round may aggregate."""
        return self.started.min_clients

    @property
    def deadline(self) -> datetime:
        """When the round stops waiting."""
        return self.started.deadline

    def restarted(self, event: RoundStarted) -> RoundState:
        """The round after a newer ``round.started`` (a retry): new selection and deadline.

        Updates of clients still selected are kept when the global model is unchanged
        (they are deltas against it); all others are forgotten, and so are a decline (it was of
        the earlier attempt) and a rejection that did not settle its client.
        """
        same_model = event.global_model == self.started.global_model
        keep = set(event.selected_clients) if same_model else set()
        kept = {
            c: u
            for c, u in self.updates.items()
            if c in keep and _settled(u) and u.code is not RejectCode.DECLINED
        }
        return replace(
            self,
            started=event,
            status=RoundStatus.OPEN,
            version=self.version + 1,
            updates=kept,
            result=None,
            published=False,
        )

    def admit(self, client_id: str) -> Admission:
        """Decide, from the bookkeeping alone, what to do with an update of ``client_id``."""
        if self.status is RoundStatus.AGGREGATED:
            return Admission.CLOSED
        existing = self.updates.get(client_id)
        if existing is not None and _settled(existing):
            return Admission.DUPLICATE
        if client_id not in self.selected:
            return Admission.NOT_SELECTED
        return Admission.CHECK

    def with_update(self, record: UpdateRecord) -> RoundState:
        """The round with ``record`` recorded (replacing a pending one of the same client)."""
        return replace(self, updates={**self.updates, record.client_id: record})

    def accepted(self) -> list[UpdateRecord]:
        """Accepted updates of selected clients, in selection order."""
        return [
            u
            for c in self.selected
            if (u := self.updates.get(c)) is not None and u.status is UpdateStatus.ACCEPTED
        ]

    def pending(self) -> list[UpdateRecord]:
        """Updates that arrived before the round opened, not judged yet."""
        return [u for u in self.updates.values() if u.status is UpdateStatus.PENDING]

    def reported(self) -> set[str]:
        """Selected clients judged for good: accepted, or rejected for what their object holds
        (not a missing object or other bytes than the event said: see :data:`NOT_ITS_OBJECT`)."""
        return {c for c in self.selected if (u := self.updates.get(c)) is not None and _settled(u)}

    def decide(self, now: datetime) -> Decision:
        """Close once all selected reported or at the deadline: aggregate if enough, else expire.

        Enough is ``min_clients`` accepted updates (at least one).
        """
        if self.status is not RoundStatus.OPEN:
            return Decision.WAIT
        enough = len(self.accepted()) >= max(1, self.min_clients)
        if self.reported() == set(self.selected) or now >= self.deadline:
            return Decision.AGGREGATE if enough else Decision.EXPIRE
        return Decision.WAIT

    def dropped(self) -> list[DroppedClient]:
        """Selected clients left out: rejected ones with their reason, stragglers ``deadline``."""
        out: list[DroppedClient] = []
        for client in self.selected:
            record = self.updates.get(client)
            if record is None or record.status is UpdateStatus.PENDING:
                out.append(
                    DroppedClient(
                        client_id=client,
                        code=RejectCode.DEADLINE.value,
                        message="no update by the deadline",
                    )
                )
            elif record.status is UpdateStatus.REJECTED:
                code = record.code.value if record.code else RejectCode.INVALID_UPDATE.value
                out.append(
                    DroppedClient(client_id=client, code=code, message=record.reason or code)
                )
        return out

    def shortfall(self) -> str:
        """Why an expired round expired, for logs and progress."""
        return (
            f"round {self.round}: {len(self.accepted())} of min {self.min_clients} "
            f"clients reported an acceptable update by the deadline"
        )


def _settled(record: UpdateRecord) -> bool:
    """Judged for good: accepted, or rejected for what the client's own object holds."""
    if record.status is UpdateStatus.PENDING:
        return False
    return not (record.status is UpdateStatus.REJECTED and record.code in NOT_ITS_OBJECT)


def weighted_train_metrics(records: Iterable[UpdateRecord]) -> dict[str, float]:
    """Sample-weighted mean of the clients' reported ``loss`` and ``accuracy``.

    Returned as ``train_loss`` and ``train_accuracy``; a metric no client reported is left
    out, and a client that did not report one does not weigh in its mean.
    """
    records = list(records)
    out: dict[str, float] = {}
    for name in ("loss", "accuracy"):
        pairs = [(r.metrics[name], r.num_samples) for r in records if name in r.metrics]
        total = sum(n for _, n in pairs)
        if pairs and total > 0:
            out[f"train_{name}"] = sum(v * n for v, n in pairs) / total
    return out
