"""In-memory fakes of orchestration's ports, for the unit tests (never shipped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from fedbus.events import Event, decode, encode
from fedbus_orchestration.lifetime import ClientSpend
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.state import Job, JobState
from fedbus_orchestration.store import ConcurrentUpdateError, PublishFn, newer_spend, newest

__all__ = ["CLOSED", "FakeClock", "FakeJobStore", "holder"]


class FakeClock:
    """A clock the test moves by hand (``Deps.clock``)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += timedelta(seconds=seconds)


class FakeJobStore:
    """A :class:`~fedbus_orchestration.store.JobStore` in dictionaries (events kept encoded).

    It passes the same contract test as the PostgreSQL store (``test_store_contract.py``).
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._outbox: dict[str, tuple[list[bytes], bool]] = {}
        self._trainers: dict[str, TrainerInfo] = {}
        self._spends: dict[tuple[str, str], ClientSpend] = {}

    async def get(self, job_id: str) -> Job | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        return self.jobs.get(job_id)

    async def find_by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        for job in self.jobs.values():
            if job.tenant == tenant and job.idempotency_key == key:
                return job
        return None

    async def emitted(self, cause_id: str) -> list[Event] | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        entry = self._outbox.get(cause_id)
        return None if entry is None else [decode(raw) for raw in entry[0]]

    async def record(
        self,
        *,
        cause_id: str,
        events: Sequence[Event],
        job: Job | None = None,
        published: bool = True,
    ) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        if cause_id in self._outbox:
            raise ConcurrentUpdateError(f"cause {cause_id} was recorded already")
        if job is not None:
            self._check(job)
            self.jobs[job.job_id] = replace(job, version=job.version + 1)
        self._outbox[cause_id] = ([encode(e) for e in events], published)

    def _check(self, job: Job) -> None:
        stored = self.jobs.get(job.job_id)
        if job.version == 0:
            if stored is not None:
                raise ConcurrentUpdateError(f"job {job.job_id} exists already")
            if job.idempotency_key is not None:
                for other in self.jobs.values():
                    same = (other.tenant, other.idempotency_key)
                    if same == (job.tenant, job.idempotency_key):
                        raise ConcurrentUpdateError("idempotency key used already")
        elif stored is None or stored.version != job.version:
            raise ConcurrentUpdateError(f"job {job.job_id} changed since it was read")

    async def running(self) -> list[Job]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        waiting = {JobState.RUNNING, JobState.AWAITING_BUDGET}
        return [j for j in self.jobs.values() if j.state in waiting]

    async def publish_pending(self, publish: PublishFn) -> int:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        count = 0
        for cause_id, (raws, published) in list(self._outbox.items()):
            if not published:
                await publish([decode(raw) for raw in raws])
                self._outbox[cause_id] = (raws, True)
                count += len(raws)
        return count

    async def save_trainer(self, trainer: TrainerInfo) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        self._trainers[trainer.client_id] = newest(self._trainers.get(trainer.client_id), trainer)

    async def trainers(self, dataset: str) -> list[TrainerInfo]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        return [t for t in self._trainers.values() if dataset in t.datasets]

    async def save_client_spend(self, spend: ClientSpend) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        key = (spend.client_id, spend.dataset)
        self._spends[key] = newer_spend(self._spends.get(key), spend)

    async def client_spends(self, dataset: str) -> dict[str, ClientSpend]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        return {c: s for (c, d), s in sorted(self._spends.items()) if d == dataset}


CLOSED: dict[str, object] = {"additionalProperties": False, "properties": {}, "type": "object"}
"""The options schema of a model that takes none."""


def holder(
    client_id: str,
    dataset: str = "digits",
    *,
    models: dict[str, dict[str, object]] | None = None,
    buildable: Sequence[str] | None = None,
    problems: dict[str, str] | None = None,
    shape: Sequence[int] = (1, 8, 8),
    now: datetime | None = None,
    lora_targets: dict[str, list[str]] | None = None,
) -> TrainerInfo:
    """A fresh trainer holding ``dataset`` that announces ``models`` (default cnn and mlp,
    both buildable for it) as :func:`~fedbus_orchestration.admission.capabilities_of` keeps it."""
    from fedbus.events import TrainerStatus

    announced = models if models is not None else {"cnn": CLOSED, "mlp": CLOSED}
    return TrainerInfo(
        client_id=client_id, datasets={dataset: 100}, device="cpu", status=TrainerStatus.IDLE,
        last_seen=now or datetime(2025, 3, 14, 9, 0), interval_seconds=2,
        capabilities={
            "models": {m: {"package": "p", "version": "1", "options_schema": schema,
                           "lora_targets": (lora_targets or {}).get(m, [])}
                       for m, schema in announced.items()},
            "datasets": {dataset: {"feature_shape": list(shape), "classes": ["0", "1"],
                                   "manifest_sha256": None,
                                   "models": list(announced if buildable is None else buildable),
                                   "problems": problems or {}}},
        },
    )  # fmt: skip
