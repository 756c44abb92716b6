"""The registry's storage port and its in-memory implementation (unit tests, local tries).

:class:`~fedbus_registry.adapters.postgres.PostgresRegistryStore` is the production one; one
contract test (``tests/test_store_contract.py``) runs against both.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from fedbus.events import JobCompleted, utc_now
from fedbus_registry.versions import (
    JobInfo,
    ModelSummary,
    ModelVersion,
    NewVersion,
    RoundRecord,
)

__all__ = ["InMemoryRegistryStore", "RegistryStore"]


class RegistryStore(ABC):
    """What the registry remembers: jobs, their rounds and ends, and the registered versions."""

    @abstractmethod
    async def save_job(self, job: JobInfo) -> None:
        """Remember a job's tenant and spec; a second save of the same job id changes nothing."""

    @abstractmethod
    async def job(self, job_id: str) -> JobInfo | None:
        """The job saved under ``job_id``, if any."""

    @abstractmethod
    async def save_round(self, job_id: str, record: RoundRecord) -> None:
        """Remember a completed round; a retried round replaces the earlier outcome."""

    @abstractmethod
    async def rounds(self, job_id: str) -> list[RoundRecord]:
        """A job's completed rounds, by round number."""

    @abstractmethod
    async def save_completion(self, event: JobCompleted) -> None:
        """Remember that a job ended (kept until its version can be registered)."""

    @abstractmethod
    async def completion(self, job_id: str) -> JobCompleted | None:
        """The saved ``job.completed`` of ``job_id``, if any."""

    @abstractmethod
    async def register(self, new: NewVersion) -> tuple[ModelVersion, bool]:
        """Register ``new`` as the next version of its (tenant, name).

        Numbers start at 1 and are assigned atomically; the parent is the version before.
        A job is registered at most once: for a job id already registered, the existing
        version comes back with ``False``; otherwise the new one with ``True``.
        """

    @abstractmethod
    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        """The version registered for ``job_id`` (any tenant: callers check the tenant)."""

    @abstractmethod
    async def models(self, tenant: str) -> list[ModelSummary]:
        """A tenant's model names with their latest version, by name."""

    @abstractmethod
    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """Every version of a tenant's model, oldest first (empty for an unknown name)."""

    @abstractmethod
    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        """One version of a tenant's model, if it exists."""


class InMemoryRegistryStore(RegistryStore):
    """Dictionaries behind a lock; same behaviour as the PostgreSQL store, nothing persisted."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobInfo] = {}
        self._rounds: dict[str, dict[int, RoundRecord]] = {}
        self._completions: dict[str, JobCompleted] = {}
        self._versions: dict[tuple[str, str], list[ModelVersion]] = {}
        self._by_job: dict[str, ModelVersion] = {}
        self._lock = asyncio.Lock()

    async def save_job(self, job: JobInfo) -> None:
        """See :class:`RegistryStore`."""
        self._jobs.setdefault(job.job_id, job)

    async def job(self, job_id: str) -> JobInfo | None:
        """See :class:`RegistryStore`."""
        return self._jobs.get(job_id)

    async def save_round(self, job_id: str, record: RoundRecord) -> None:
        """See :class:`RegistryStore`."""
        self._rounds.setdefault(job_id, {})[record.round] = record

    async def rounds(self, job_id: str) -> list[RoundRecord]:
        """See :class:`RegistryStore`."""
        return [r for _, r in sorted(self._rounds.get(job_id, {}).items())]

    async def save_completion(self, event: JobCompleted) -> None:
        """See :class:`RegistryStore`."""
        self._completions.setdefault(event.job_id, event)

    async def completion(self, job_id: str) -> JobCompleted | None:
        """See :class:`RegistryStore`."""
        return self._completions.get(job_id)

    async def register(self, new: NewVersion) -> tuple[ModelVersion, bool]:
        """See :class:`RegistryStore`."""
        async with self._lock:
            existing = self._by_job.get(new.job_id)
            if existing is not None:
                return existing, False
            line = self._versions.setdefault((new.tenant, new.name), [])
            parent = line[-1].version if line else None
            version = ModelVersion(
                spec=new, version=len(line) + 1, parent_version=parent, created_at=utc_now()
            )
            line.append(version)
            self._by_job[new.job_id] = version
            return version, True

    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        """See :class:`RegistryStore`."""
        return self._by_job.get(job_id)

    async def models(self, tenant: str) -> list[ModelSummary]:
        """See :class:`RegistryStore`."""
        return [
            ModelSummary(name=name, latest_version=line[-1].version, updated_at=line[-1].created_at)
            for (owner, name), line in sorted(self._versions.items())
            if owner == tenant and line
        ]

    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """See :class:`RegistryStore`."""
        return list(self._versions.get((tenant, name), []))

    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        """See :class:`RegistryStore`."""
        line = self._versions.get((tenant, name), [])
        return line[number - 1] if 1 <= number <= len(line) else None
