"""``fedbus audit verify``: replay the event log and check what it says.

Pure checks over records already read (:func:`verify`); the command
(:mod:`fedbus_cli.commands.audit`) reads Kafka and MinIO. What each check proves, and what
it cannot detect yet, is in docs/audit.md.
"""

from fedbus_cli.audit.artifacts import check_artifacts, reaggregate
from fedbus_cli.audit.histories import check_histories
from fedbus_cli.audit.ledger import check_privacy, prescribed_local_dp
from fedbus_cli.audit.report import AuditReport, Check, Finding, Verdict, write_report
from fedbus_cli.audit.signatures import LogRecord, Seen, check_signatures
from fedbus_cli.audit.verify import NO_NOTARY, by_job, verify

__all__ = [
    "NO_NOTARY",
    "AuditReport",
    "Check",
    "Finding",
    "LogRecord",
    "Seen",
    "Verdict",
    "by_job",
    "check_artifacts",
    "check_histories",
    "check_privacy",
    "check_signatures",
    "prescribed_local_dp",
    "reaggregate",
    "verify",
    "write_report",
]
