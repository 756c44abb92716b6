"""In-memory fakes of the registry's ports, for its unit tests (never shipped in the wheel)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fedbus.errors import NonRetryableError
from fedbus.events import JobCompleted, utc_now
from fedbus_registry.versions import (
    JobInfo,
    LedgerEntry,
    ModelSummary,
    ModelVersion,
    NewVersion,
    RoundRecord,
)

__all__ = ["FakeRegistryStore"]


class FakeRegistryStore:
    """Dictionaries behind a lock; same behaviour as the PostgreSQL store, nothing persisted."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobInfo] = {}
        self._rounds: dict[str, dict[int, RoundRecord]] = {}
        self._completions: dict[str, tuple[JobCompleted, datetime]] = {}
        self._ledgers: dict[str, dict[int, LedgerEntry]] = {}
        self._refusals: dict[str, str] = {}
        self._versions: dict[tuple[str, str], list[ModelVersion]] = {}
        self._by_job: dict[str, ModelVersion] = {}
        self._lock = asyncio.Lock()

    async def save_job(self, job: JobInfo) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        self._jobs.setdefault(job.job_id, job)

    async def job(self, job_id: str) -> JobInfo | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return self._jobs.get(job_id)

    async def save_round(self, job_id: str, record: RoundRecord) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        self._rounds.setdefault(job_id, {})[record.round] = record

    async def rounds(self, job_id: str) -> list[RoundRecord]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return [r for _, r in sorted(self._rounds.get(job_id, {}).items())]

    async def save_completion(self, event: JobCompleted) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        self._completions.setdefault(event.job_id, (event, utc_now()))

    async def completion(self, job_id: str) -> JobCompleted | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        found = self._completions.get(job_id)
        return None if found is None else found[0]

    async def save_ledger(self, job_id: str, entry: LedgerEntry) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        self._ledgers.setdefault(job_id, {}).setdefault(entry.round, entry)

    async def ledger(self, job_id: str) -> list[LedgerEntry]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return [e for _, e in sorted(self._ledgers.get(job_id, {}).items())]

    async def overdue(self, before: datetime) -> list[JobCompleted]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return [
            event
            for job_id, (event, received) in sorted(self._completions.items())
            if received < before and job_id not in self._by_job and job_id not in self._refusals
        ]

    async def refuse(self, job_id: str, reason: str) -> bool:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._lock:
            if job_id in self._by_job or job_id in self._refusals:
                return False
            self._refusals[job_id] = reason
            return True

    async def refusal(self, job_id: str) -> str | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return self._refusals.get(job_id)

    async def register(self, new: NewVersion) -> tuple[ModelVersion, bool]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._lock:
            existing = self._by_job.get(new.job_id)
            if existing is not None:
                return existing, False
            if new.job_id in self._refusals:
                raise NonRetryableError(
                    f"job {new.job_id} was refused: {self._refusals[new.job_id]}"
                )
            line = self._versions.setdefault((new.tenant, new.name), [])
            parent = line[-1].version if line else None
            version = ModelVersion(
                spec=new, version=len(line) + 1, parent_version=parent, created_at=utc_now()
            )
            line.append(version)
            self._by_job[new.job_id] = version
            return version, True

    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return self._by_job.get(job_id)

    async def models(self, tenant: str) -> list[ModelSummary]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return [
            ModelSummary(name=name, latest_version=line[-1].version, updated_at=line[-1].created_at)
            for (owner, name), line in sorted(self._versions.items())
            if owner == tenant and line
        ]

    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return list(self._versions.get((tenant, name), []))

    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        line = self._versions.get((tenant, name), [])
        return line[number - 1] if 1 <= number <= len(line) else None
