"""The audit report: one verdict per check, with where each failure was found.

A check passes, fails, or does not apply (with the reason: no notary in this deployment, a
job without DP). The report is written as JSON (for machines) and Markdown (for the
auditor); it is ``ok`` only when no check failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["AuditReport", "Check", "Finding", "Verdict", "write_report"]


class Verdict(StrEnum):
    """A check's outcome."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class Finding:
    """One failure: what is wrong and where (``topic[partition]@offset`` or an object key)."""

    where: str
    message: str


@dataclass
class Check:
    """One check's verdict, what it covered and what it found.

    ``verdict`` is derived: ``fail`` with any finding, else ``not_applicable`` when a reason
    was given and nothing was checked, else ``pass``.
    """

    name: str
    title: str
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """pass, fail or not_applicable (see the class docstring)."""
        if self.findings:
            return Verdict.FAIL
        if self.reason is not None and self.checked == 0:
            return Verdict.NOT_APPLICABLE
        return Verdict.PASS

    def fail(self, where: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(where, message))

    def as_json(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return {
            "name": self.name, "title": self.title, "verdict": self.verdict.value,
            "checked": self.checked, "reason": self.reason, "notes": self.notes,
            "findings": [{"where": f.where, "message": f.message} for f in self.findings],
        }  # fmt: skip


@dataclass
class AuditReport:
    """Every check of one run of ``fedbus audit verify``."""

    job_id: str | None
    records: int = 0
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(c.verdict is not Verdict.FAIL for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "job_id": self.job_id, "records": self.records, "ok": self.ok,
            "checks": [c.as_json() for c in self.checks],
        }  # fmt: skip

    def as_markdown(self) -> str:
        """The report for a person: a verdict table, then each check's findings and notes."""
        scope = f"job `{self.job_id}`" if self.job_id else "every job"
        lines = [
            f"# fedbus audit: {scope}", "",
            f"{self.records} records read. Verdict: **{'PASS' if self.ok else 'FAIL'}**.", "",
            "| check | verdict | checked | findings |", "| --- | --- | --- | --- |",
        ]  # fmt: skip
        for c in self.checks:
            lines.append(f"| {c.title} | {c.verdict.value} | {c.checked} | {len(c.findings)} |")
        for c in self.checks:
            lines += ["", f"## {c.title}: {c.verdict.value}", ""]
            if c.reason:
                lines.append(f"{c.reason}")
            lines += [f"- {note}" for note in c.notes]
            lines += [f"- **{f.where}**: {f.message}" for f in c.findings]
        return "\n".join(lines) + "\n"


def write_report(report: AuditReport, directory: Path) -> tuple[Path, Path]:
    """Write ``audit.json`` and ``audit.md`` under ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_md = directory / "audit.json", directory / "audit.md"
    as_json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    as_md.write_text(report.as_markdown())
    return as_json, as_md
