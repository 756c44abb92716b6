"""The registry's storage port.

:class:`~fedbus_registry.adapters.postgres.PostgresRegistryStore` implements it; one contract
test (``tests/test_store_contract.py``) runs against it and the in-memory fake of the tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from fedbus.events import JobCompleted
from fedbus_registry.versions import (
    JobInfo,
    LedgerEntry,
    ModelSummary,
    ModelVersion,
    NewVersion,
    RoundRecord,
)

__all__ = ["RegistryStore"]


class RegistryStore(Protocol):
    """What the registry remembers: jobs, their rounds, ledgers and ends, refusals, versions."""

    async def save_job(self, job: JobInfo) -> None:
        """Remember a job's tenant and spec; a second save of the same job id changes nothing."""

    async def job(self, job_id: str) -> JobInfo | None:
        """The job saved under ``job_id``, if any."""

    async def save_round(self, job_id: str, record: RoundRecord) -> None:
        """Remember a completed round; a retried round replaces the earlier outcome."""

    async def rounds(self, job_id: str) -> list[RoundRecord]:
        """A job's completed rounds, by round number."""

    async def save_completion(self, event: JobCompleted) -> None:
        """Remember that a job ended (kept until its version can be registered)."""

    async def completion(self, job_id: str) -> JobCompleted | None:
        """The saved ``job.completed`` of ``job_id``, if any."""

    async def save_ledger(self, job_id: str, entry: LedgerEntry) -> None:
        """Remember the accountant's figures after one round; the first of a round stays."""

    async def ledger(self, job_id: str) -> list[LedgerEntry]:
        """A job's ledger entries, by round."""

    async def overdue(self, before: datetime) -> list[JobCompleted]:
        """Saved ends received before ``before`` with neither a version nor a refusal."""

    async def refuse(self, job_id: str, reason: str) -> bool:
        """Record that ``job_id`` is never to be registered, and why.

        True when this call refused it; False when it was refused before or is registered
        (atomically with :meth:`register`: a job is registered or refused, never both).
        """

    async def refusal(self, job_id: str) -> str | None:
        """Why ``job_id`` was refused, if it was."""

    async def register(self, new: NewVersion) -> tuple[ModelVersion, bool]:
        """Register ``new`` as the next version of its (tenant, name).

        Numbers start at 1 and are assigned atomically; the parent is the version before.
        A job is registered at most once: for a job id already registered, the existing
        version comes back with ``False``; otherwise the new one with ``True``.

        Raises
        ------
        NonRetryableError
            The job was refused (:meth:`refuse`).
        """

    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        """The version registered for ``job_id`` (any tenant: callers check the tenant)."""

    async def models(self, tenant: str) -> list[ModelSummary]:
        """A tenant's model names with their latest version, by name."""

    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """Every version of a tenant's model, oldest first (empty for an unknown name)."""

    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        """One version of a tenant's model, if it exists."""
