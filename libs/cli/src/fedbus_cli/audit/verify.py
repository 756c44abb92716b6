"""``verify``: every check of the audit over records read from the log."""

from __future__ import annotations

from collections.abc import Iterable

from fedbus.bus.signing import KeyDirectory
from fedbus.events import ClientBudgetUpdated, DeadLetter, TopicCatalog, TrainerHeartbeat
from fedbus.storage import ArtifactStore
from fedbus_cli.audit.artifacts import check_artifacts, reaggregate
from fedbus_cli.audit.histories import check_histories, unique
from fedbus_cli.audit.ledger import check_privacy
from fedbus_cli.audit.report import AuditReport, Check
from fedbus_cli.audit.signatures import LogRecord, Seen, check_signatures

__all__ = ["NO_NOTARY", "by_job", "verify"]

NO_NOTARY = (
    "no notary in this deployment yet: no hash chain or signed tree head covers the log, so "
    "a principal with write access could drop or reorder its own events undetected"
)
_NOT_A_JOB_STEP = (ClientBudgetUpdated, DeadLetter, TrainerHeartbeat)


def by_job(seen: Iterable[Seen], job_id: str | None = None) -> dict[str, list[Seen]]:
    """Each job's events (all jobs, or ``job_id``'s), redeliveries dropped, in log order."""
    jobs: dict[str, list[Seen]] = {}
    for s in seen:
        job = s.event.job_id
        if job and (job_id is None or job == job_id) and not isinstance(s.event, _NOT_A_JOB_STEP):
            jobs.setdefault(job, []).append(s)
    return {job: unique(events) for job, events in jobs.items()}


async def verify(
    records: Iterable[LogRecord],
    *,
    keys: KeyDirectory | None,
    catalog: TopicCatalog,
    store: ArtifactStore,
    job_id: str | None = None,
    recompute: bool = False,
    artifact_keys: bool = True,
) -> AuditReport:
    """Run every check over ``records`` (the log from its beginning).

    Parameters
    ----------
    records
        The records of every event topic (with ``job_id``: at least that job's).
    keys
        The key directory built from ``key.published`` and the root public keys; None when
        no root key was given (check 1 then fails).
    catalog
        The topic catalog (which role produces which topic).
    store
        The artifact store, with the artifact keys when objects are encrypted at rest.
    job_id
        Audit this job only.
    recompute
        Recompute FedAvg rounds from their updates (``--reaggregate``).
    artifact_keys
        Whether ``store`` holds the artifact keys; without them, failed checks 4 and 5 say
        that encrypted objects cannot match their events.
    """
    records = list(records)
    report = AuditReport(job_id, records=len(records))
    signatures, seen = check_signatures(records, keys, catalog)
    jobs = by_job(seen, job_id)
    histories = check_histories(jobs)
    if job_id is not None and job_id not in jobs:
        histories.fail(f"job {job_id}", "no event of this job passed check 1")
    if recompute:
        again = await reaggregate(jobs, store, artifact_keys=artifact_keys)
    else:
        again = Check("reaggregate", "5. Rounds recomputed from the stored updates",
                      reason="not asked for (--reaggregate)")  # fmt: skip
    report.checks = [
        signatures, histories, check_privacy(jobs),
        await check_artifacts(jobs, store, artifact_keys=artifact_keys), again,
        Check("notary", "6. Sealed heads and hash chains", reason=NO_NOTARY),
    ]  # fmt: skip
    return report
