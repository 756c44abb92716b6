"""``fedbus audit verify``'s checks on a synthetic, signed log of a two-round local-DP job.

The log is what the services would write: every record signed by its producer's key (trainers'
keys bound to their client id), artifacts in an in-memory store, the accountant's epsilons
computed here from the prescribed mechanism with the RDP accountant. Each test then tampers
with one thing and checks that the audit names it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedbus.aggregation import ClientUpdate, FedAvg
from fedbus.bus.codec import encode_event
from fedbus.bus.signing import (
    KEY_TOPIC,
    KeyDirectory,
    Signer,
    generate_key,
    key_id_of,
    key_record,
)
from fedbus.bus.topics import catalog
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    DpUsage,
    Event,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobMode,
    JobRequested,
    JobSpec,
    JobStatus,
    ModelRef,
    ModelRegistered,
    PrivacyBudget,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    UpdateSubmitted,
)
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus.settings import FedbusSettings
from fedbus.storage import InMemoryArtifactStore, S3ArtifactStore, tensors_to_bytes, update_key
from fedbus_cli import main
from fedbus_cli.audit import AuditReport, LogRecord, Verdict, prescribed_local_dp, sources, verify
from fedbus_cli.audit.artifacts import NO_ARTIFACT_KEYS
from fedbus_cli.audit.sources import audited_topics
from fedbus_cli.commands import audit as audit_command
from fedbus_cli.commands import privacy

JOB = "job-audit"
CT = [("content-type", b"application/json")]
DELTA, TARGET = 1e-5, 8.0
SAMPLES = {"a": 100, "b": 50}
ROLES = {
    "gateway": ("gateway", None), "orchestration": ("orchestration", None),
    "aggregator": ("aggregator", None), "privacy-accountant": ("privacy-accountant", None),
    "model-registry": ("model-registry", None), "a": ("trainer", "a"), "b": ("trainer", "b"),
}  # fmt: skip


@dataclass
class Log:
    """Signed records as the broker would hold them, the store, and the keys."""

    root: Any = field(default_factory=generate_key)
    keys: dict[str, Any] = field(default_factory=dict)
    records: list[LogRecord] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    store: InMemoryArtifactStore = field(default_factory=InMemoryArtifactStore)

    def directory(self) -> KeyDirectory:
        directory = KeyDirectory([self.root.public_key()], catalog())
        for name, (role, client) in ROLES.items():
            key = self.keys.setdefault(name, generate_key())
            binds = {"client_id": client} if client else None
            event = key_record(key, principal=name, role=role, binds=binds)
            value = encode_event(event)
            headers = Signer(self.root).sign(KEY_TOPIC, event.kafka_key(), value, CT)
            directory.add_record(event.kafka_key(), value, headers)
        return directory

    def add(self, signer: str, event: Event, label: str) -> Event:
        key = self.keys.setdefault(signer, generate_key())
        topic, value = event.topic(), encode_event(event)
        headers = tuple(Signer(key).sign(topic, event.kafka_key(), value, CT))
        record = LogRecord(topic, 0, len(self.records), event.kafka_key(), value, headers)
        self.records.append(record)
        self.where[label] = record.where
        return event


def _arrays(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((3, 2), value, dtype=np.float32), "b": np.arange(2, dtype=np.float32)}


def _started(round_: int, global_model: ModelRef | None) -> RoundStarted:
    privacy = PrivacySpec(mode=PrivacyMode.LOCAL_DP, target_epsilon=TARGET, delta=DELTA,
                          noise_multiplier=1.1, clipping_norm=1.0)  # fmt: skip
    return RoundStarted.create(
        source="orchestration", job_id=JOB, round=round_, selected_clients=["a", "b"],
        min_clients=2, deadline=datetime.now(UTC) + timedelta(minutes=5),
        global_model=global_model, model="mlp", dataset="ds",
        training=TrainingConfig(batch_size=32, local_epochs=2), privacy=privacy, seed=7,
        strategy=StrategySpec(),
    )  # fmt: skip


def _budget(round_: int, steps: dict[str, GaussianSteps], scale: float = 1.0) -> BudgetUpdated:
    spent = {c: scale * compute_epsilon_composed(history=[s] * round_, delta=DELTA)
             for c, s in steps.items()}  # fmt: skip

    def status(value: float) -> BudgetStatus:
        return BudgetStatus(epsilon_spent=value, epsilon_remaining=TARGET - value, delta=DELTA)

    return BudgetUpdated.create(
        source="privacy-accountant", job_id=JOB, round=round_,
        budget=PrivacyBudget(epsilon=TARGET, delta=DELTA), total=status(max(spent.values())),
        clients={c: status(v) for c, v in spent.items()}, exhausted=False,
    )  # fmt: skip


@dataclass(frozen=True)
class Tweaks:
    """One thing a dishonest party changed (all off: the honest log)."""

    claimed_noise: float | None = None  # trainer a claims this noise multiplier
    epsilon_scale: float = 1.0  # the accountant's round-2 figures, scaled
    registered_round: int = 2  # whose global model the registry names
    published_shift: float = 0.0  # the aggregator's round-2 model, shifted
    second_round: int = 2  # the number the second round carries


def job_log(t: Tweaks = Tweaks()) -> Log:
    """The whole job, with ``t`` applied."""
    log = Log()
    spec = JobSpec(mode=JobMode.FEDERATED, model="mlp", dataset="ds", rounds=2,
                   privacy=PrivacySpec(mode=PrivacyMode.LOCAL_DP, target_epsilon=TARGET,
                                       delta=DELTA, clipping_norm=1.0))  # fmt: skip
    request = log.add("gateway", JobRequested.create(source="gateway", job_id=JOB, tenant="t",
                                                     spec=spec), "requested")  # fmt: skip
    log.add("orchestration", JobAccepted.create(source="orchestration", job_id=JOB, tenant="t",
            request_event_id=request.event_id, spec=spec), "accepted")  # fmt: skip
    model: ModelRef | None = None
    weights = _arrays(0.5)
    for number, round_ in ((1, 1), (2, t.second_round)):
        started = log.add("orchestration", _started(round_, model), f"started-{number}")
        assert isinstance(started, RoundStarted)
        updates, steps = [], {}
        for client, n in SAMPLES.items():
            delta = _arrays(0.01 * (number + len(client)) * n)
            ref = asyncio.run(log.store.put_at(tensors_to_bytes(delta),
                                               key=update_key(JOB, round_, client)))  # fmt: skip
            dp = prescribed_local_dp(started, num_samples=n)
            if client == "a" and t.claimed_noise is not None:
                dp = DpUsage(**{**dp.model_dump(), "noise_multiplier": t.claimed_noise})
            steps[client] = GaussianSteps(dp.noise_multiplier, dp.sample_rate, dp.steps)
            log.add(client, UpdateSubmitted.create(source="trainer", job_id=JOB, round=round_,
                    client_id=client, update=ref, num_samples=n, dp=dp),
                    f"update-{number}-{client}")  # fmt: skip
            updates.append(ClientUpdate(client, delta, n))
        if number == 2:
            weights = FedAvg().aggregate(global_model=weights, updates=updates)
            weights = {k: v + np.float32(t.published_shift) for k, v in weights.items()}
        ref = asyncio.run(log.store.put_tensors(weights, prefix=f"jobs/{JOB}/round-{round_}/g"))
        log.add("aggregator", RoundCompleted.create(source="aggregator", job_id=JOB,
                round=round_, global_model=ref, participants=["a", "b"], total_samples=150),
                f"completed-{number}")  # fmt: skip
        scale = t.epsilon_scale if number == 2 else 1.0
        log.add("privacy-accountant", _budget(round_, steps, scale), f"budget-{number}")
        model = ref
        log.where[f"model-{number}"] = ref.object_key
        log.where[f"sha-{number}"] = ref.sha256
    log.add(
        "orchestration",
        JobCompleted.create(
            source="orchestration",
            job_id=JOB,
            status=JobStatus.COMPLETED,
            rounds_completed=2,
            final_model=_ref_of(log, 2),
        ),
        "job-completed",
    )
    log.add(
        "model-registry",
        ModelRegistered.create(
            source="model-registry",
            job_id=JOB,
            name="mlp-ds",
            version=1,
            artifact=_ref_of(log, t.registered_round),
        ),
        "registered",
    )
    return log  # fmt: skip


def _ref_of(log: Log, number: int) -> ModelRef:
    key = log.where[f"model-{number}"]
    body = log.store.objects[key]
    return ModelRef(object_key=key, size_bytes=len(body), sha256=log.where[f"sha-{number}"])


def audit(log: Log, records: list[LogRecord] | None = None, **kw: Any) -> AuditReport:
    return asyncio.run(verify(records if records is not None else log.records,
                              keys=log.directory(), catalog=catalog(), store=log.store,
                              job_id=JOB, recompute=True, **kw))  # fmt: skip


def verdicts(report: AuditReport) -> dict[str, str]:
    return {c.name: c.verdict.value for c in report.checks}


def findings(report: AuditReport, name: str) -> list[tuple[str, str]]:
    check = next(c for c in report.checks if c.name == name)
    return [(f.where, f.message) for f in check.findings]


def test_an_honest_log_passes_every_check_and_the_notary_is_not_applicable() -> None:
    report = audit(job_log())

    assert verdicts(report) == {
        "signatures": "pass", "histories": "pass", "privacy": "pass", "artifacts": "pass",
        "reaggregate": "pass", "notary": "not_applicable",
    }  # fmt: skip
    assert report.ok
    again = next(c for c in report.checks if c.name == "reaggregate")
    assert again.checked == 1  # round 2; round 1 starts from the plugin's initial weights
    assert any("round 1" in note and "initial weights" in note for note in again.notes)


def test_one_changed_byte_fails_check_1_naming_the_record_and_the_event_is_left_out() -> None:
    log = job_log()
    at = next(i for i, r in enumerate(log.records) if r.where == log.where["budget-2"])
    record = log.records[at]
    value = bytearray(record.value or b"")
    digit = value.index(b'"epsilon_spent":') + len(b'"epsilon_spent":')  # still valid JSON
    value[digit] = ord("9") if value[digit] != ord("9") else ord("8")
    records = [*log.records[:at], replace(record, value=bytes(value)), *log.records[at + 1 :]]

    report = audit(log, records)

    assert [w for w, _ in findings(report, "signatures")] == [log.where["budget-2"]]
    assert "bad_signature" in findings(report, "signatures")[0][1]
    assert not report.ok


def test_a_record_signed_by_another_trainer_is_bound_field() -> None:
    log = job_log()
    at = next(i for i, r in enumerate(log.records) if r.where == log.where["update-2-a"])
    record = log.records[at]
    headers = tuple(Signer(log.keys["b"]).sign(record.topic, record.key, record.value or b"", CT))
    records = [*log.records[:at], replace(record, headers=headers), *log.records[at + 1 :]]

    report = audit(log, records)

    assert findings(report, "signatures")[0][0] == log.where["update-2-a"]
    assert "bound_field" in findings(report, "signatures")[0][1]


def test_a_gap_in_the_rounds_is_named() -> None:
    report = audit(job_log(Tweaks(second_round=3)))

    problems = [m for _, m in findings(report, "histories")]
    assert any("rounds started [1, 3]" in m for m in problems), problems
    assert verdicts(report)["signatures"] == "pass"


def test_a_wrong_epsilon_in_budget_updated_fails_check_3_at_that_record() -> None:
    log = job_log(Tweaks(epsilon_scale=1.0001))

    report = audit(log)

    found = findings(report, "privacy")
    assert found
    assert all(w == log.where["budget-2"] for w, _ in found)
    assert verdicts(report)["histories"] == "pass"


def test_a_trainer_claiming_more_noise_than_prescribed_is_named_and_not_believed() -> None:
    # The accountant believed the claim (its figures follow it); the audit does not.
    log = job_log(Tweaks(claimed_noise=2.0))

    report = audit(log)

    found = findings(report, "privacy")
    claims = [w for w, m in found if "claims noise 2.0" in m]
    assert claims == [log.where["update-1-a"], log.where["update-2-a"]]
    assert any(w == log.where["budget-1"] for w, _ in found)  # recomputed epsilon is larger


def test_a_registered_sha_that_is_not_the_aggregators_last_model_fails_check_4() -> None:
    log = job_log(Tweaks(registered_round=1))

    report = audit(log)

    assert [w for w, _ in findings(report, "artifacts")] == [log.where["registered"]]
    assert "is not job.completed's final model" in findings(report, "artifacts")[0][1]
    assert log.where["sha-2"] in findings(report, "artifacts")[0][1]  # the round-2 model


def _job_with_a_rollback(final_round: int) -> Log:
    """Round 2 diverged: round 3 starts again from round 1's model; two good rounds (1 and 3),
    and ``final_round``'s model is the one job.completed and the registry name."""
    log = Log()
    spec = JobSpec(mode=JobMode.FEDERATED, model="mlp", dataset="ds", rounds=2)
    request = log.add("gateway", JobRequested.create(source="gateway", job_id=JOB, tenant="t",
                                                     spec=spec), "requested")  # fmt: skip
    log.add("orchestration", JobAccepted.create(source="orchestration", job_id=JOB, tenant="t",
            request_event_id=request.event_id, spec=spec), "accepted")  # fmt: skip
    models: dict[int, ModelRef] = {}
    for round_, starts_from in ((1, None), (2, 1), (3, 1)):
        base = models[starts_from] if starts_from else None
        started = _started(round_, base).model_copy(update={"privacy": PrivacySpec()})
        log.add("orchestration", started, f"started-{round_}")
        models[round_] = asyncio.run(log.store.put_tensors(
            _arrays(float(round_)), prefix=f"jobs/{JOB}/round-{round_}/g"))  # fmt: skip
        log.add("aggregator", RoundCompleted.create(source="aggregator", job_id=JOB,
                round=round_, global_model=models[round_], participants=["a", "b"],
                total_samples=150), f"completed-{round_}")  # fmt: skip
    final = models[final_round]
    log.add(
        "orchestration",
        JobCompleted.create(
            source="orchestration",
            job_id=JOB,
            status=JobStatus.COMPLETED,
            rounds_completed=2,
            final_model=final,
        ),
        "job-completed",
    )
    log.add("model-registry", ModelRegistered.create(source="model-registry", job_id=JOB,
            name="mlp-ds", version=1, artifact=final), "registered")  # fmt: skip
    log.where["sha-final"] = final.sha256
    return log


def test_a_job_with_a_rollback_registers_its_last_good_rounds_model_and_passes_check_4() -> None:
    # rounds_completed (2) counts good rounds; the registered model is round 3's.
    report = audit(_job_with_a_rollback(final_round=3))

    assert findings(report, "artifacts") == []
    assert findings(report, "histories") == []
    notes = next(c for c in report.checks if c.name == "artifacts").notes
    assert any("round 3's aggregate" in note for note in notes), notes


def test_a_registered_final_model_that_no_round_completed_names_fails_check_4() -> None:
    log = _job_with_a_rollback(final_round=3)
    other = asyncio.run(log.store.put_tensors(_arrays(7.0), prefix=f"jobs/{JOB}/other"))
    at = {r.where: i for i, r in enumerate(log.records)}
    log.records = log.records[: at[log.where["job-completed"]]]
    log.add(
        "orchestration",
        JobCompleted.create(
            source="orchestration",
            job_id=JOB,
            status=JobStatus.COMPLETED,
            rounds_completed=2,
            final_model=other,
        ),
        "job-completed",
    )
    log.add("model-registry", ModelRegistered.create(source="model-registry", job_id=JOB,
            name="mlp-ds", version=1, artifact=other), "registered")  # fmt: skip

    report = audit(log)

    assert [w for w, _ in findings(report, "artifacts")] == [log.where["registered"]]
    assert "no round.completed of the job names it" in findings(report, "artifacts")[0][1]


def test_a_replaced_object_fails_check_4_naming_its_key() -> None:
    log = job_log()
    key = log.where["model-1"]
    log.store.objects[key] = tensors_to_bytes(_arrays(9.0))

    report = audit(log)

    assert [w for w, _ in findings(report, "artifacts")] == [key]
    assert "SHA-256" in findings(report, "artifacts")[0][1]


def test_a_published_model_that_is_not_the_fedavg_of_the_updates_fails_check_5() -> None:
    log = job_log(Tweaks(published_shift=1e-6))

    report = audit(log)

    assert [w for w, _ in findings(report, "reaggregate")] == [log.where["completed-2"]]
    assert verdicts(report)["artifacts"] == "pass"  # its object is what the event says


def test_the_command_writes_both_reports_and_exits_1_on_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = job_log(Tweaks(epsilon_scale=2.0))

    async def fake(args: argparse.Namespace) -> AuditReport:
        assert args.reaggregate
        return await verify(log.records, keys=log.directory(), catalog=catalog(),
                            store=log.store, job_id=JOB, recompute=True)  # fmt: skip

    monkeypatch.setattr(audit_command, "RUN", fake)
    code = main(["audit", "verify", "--job", JOB, "--report", str(tmp_path), "--reaggregate"])

    assert code == 1
    data = json.loads((tmp_path / "audit.json").read_text())
    assert data["ok"] is False
    assert {c["name"]: c["verdict"] for c in data["checks"]}["privacy"] == Verdict.FAIL
    assert log.where["budget-2"] in (tmp_path / "audit.md").read_text()
    assert "FAIL" in capsys.readouterr().out


def test_the_command_exits_0_when_every_check_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = job_log()

    async def fake(args: argparse.Namespace) -> AuditReport:
        return await verify(log.records, keys=log.directory(), catalog=catalog(),
                            store=log.store, job_id=args.job)  # fmt: skip

    monkeypatch.setattr(audit_command, "RUN", fake)

    assert main(["audit", "verify", "--job", JOB, "--report", str(tmp_path)]) == 0
    assert "not asked for" in (tmp_path / "audit.md").read_text()


def test_the_audit_reads_every_event_topic_and_intake_but_no_assignment_or_key_topic() -> None:
    existing = ["round.assigned.site-a", "upstream.job.requested.acme", "job.accepted"]

    topics = audited_topics(catalog(), existing)

    assert "upstream.job.requested.acme" in topics
    assert {"job.requested", "round.started", "update.submitted", "budget.updated"} <= set(topics)
    assert "key.published" not in topics  # read by the key directory
    assert not [t for t in topics if t.startswith("round.assigned")]  # live upload URLs


def test_the_audit_reads_the_intake_of_a_tenant_whose_name_ends_in_dlq() -> None:
    existing = ["upstream.job.requested.acme.dlq", "upstream.job.cancel.requested.acme.dlq"]

    topics = audited_topics(catalog(), existing)

    assert set(existing) <= set(topics)


class _Directory(KeyDirectory):
    """``log.directory()`` with the ``stop`` the privacy report calls on a Kafka one."""

    async def stop(self) -> None:
        return None


def _privacy_read(
    log: Log, records: list[LogRecord], monkeypatch: pytest.MonkeyPatch, *, required: bool = True
) -> tuple[list[Event], list[str]]:
    """``fedbus privacy report``'s reader over ``records``, with ``log``'s keys."""
    directory = _Directory.__new__(_Directory)
    directory.__dict__.update(log.directory().__dict__)

    async def keys(settings: FedbusSettings, topics: Any) -> KeyDirectory:
        return directory

    async def read(settings: FedbusSettings, topics: Any, key: bytes | None = None) -> list[Any]:
        return [r for r in records if r.topic in topics and r.key == key]

    monkeypatch.setattr(sources, "open_key_directory", keys)
    monkeypatch.setattr(sources, "read_records", read)
    settings = FedbusSettings(root_public_keys="set", require_signatures=required)
    return asyncio.run(privacy._read(JOB, settings))


def _forged_budget_on_round_completed(log: Log) -> tuple[BudgetUpdated, LogRecord]:
    """The aggregator (a producer of round.completed) signs a budget.updated with half the
    epsilons and puts it on round.completed, where it may write."""
    steps = {c: GaussianSteps(1.1, 1 / math.ceil(n / 32), 2 * math.ceil(n / 32))
             for c, n in SAMPLES.items()}  # fmt: skip
    forged = _budget(2, steps, scale=0.5)
    value = encode_event(forged)
    headers = Signer(log.keys["aggregator"]).sign("round.completed", forged.kafka_key(), value, CT)
    return forged, LogRecord("round.completed", 0, 999, forged.kafka_key(), value, tuple(headers))


def test_an_event_signed_by_a_producer_of_the_topic_but_not_of_its_type_fails_check_1() -> None:
    log = job_log()
    _, record = _forged_budget_on_round_completed(log)

    report = audit(log, [*log.records, record])

    assert [w for w, _ in findings(report, "signatures")] == [record.where]
    assert "not an event of this topic" in findings(report, "signatures")[0][1]
    assert verdicts(report)["privacy"] == "pass"  # the forged figures were left out


def test_the_privacy_report_refuses_an_event_of_another_type_on_a_topic_its_signer_writes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = job_log()
    forged, record = _forged_budget_on_round_completed(log)

    events, refused = _privacy_read(log, [*log.records, record], monkeypatch)

    assert forged.event_id not in {e.event_id for e in events}
    assert [r.split(": ")[0] for r in refused] == [record.where]
    assert "events do not belong on topic 'round.completed'" in refused[0]
    monkeypatch.setattr(privacy, "SOURCE", lambda job_id: (events, refused))
    assert main(["privacy", "report", "--job", JOB]) == 1
    assert record.where in capsys.readouterr().err


def test_the_privacy_report_admits_unsigned_records_only_when_signatures_are_not_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = job_log()
    unsigned = [replace(r, headers=tuple(CT)) for r in log.records]

    read = [r for r in log.records if r.topic in privacy.TOPICS]  # what the report reads

    events, refused = _privacy_read(log, unsigned, monkeypatch, required=False)
    assert (len(events), refused) == (len(read), [])

    events, refused = _privacy_read(log, unsigned, monkeypatch, required=True)
    assert events == []
    assert len(refused) == len(read)
    assert all("unsigned" in r for r in refused)


def test_the_privacy_report_checks_a_signed_record_even_when_unsigned_ones_are_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = job_log()
    at = next(i for i, r in enumerate(log.records) if r.where == log.where["update-2-a"])
    record = log.records[at]
    headers = tuple(Signer(log.keys["b"]).sign(record.topic, record.key, record.value or b"", CT))
    records = [*log.records[:at], replace(record, headers=headers), *log.records[at + 1 :]]

    events, refused = _privacy_read(log, records, monkeypatch, required=False)

    assert len(events) == len([r for r in log.records if r.topic in privacy.TOPICS]) - 1
    assert [r.split(": ")[0] for r in refused] == [record.where]
    assert "bound_field" in refused[0]


def test_the_command_reads_the_records_before_the_keys_so_a_key_published_meanwhile_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trainer b's key is published after the audit started: while its records are read.
    log = job_log()
    published: list[str] = []

    async def read(settings: FedbusSettings, topics: Any, key: bytes | None = None) -> list[Any]:
        published.append("b")
        return list(log.records)

    async def keys(settings: FedbusSettings, topics: Any) -> KeyDirectory:
        directory = _Directory.__new__(_Directory)
        directory.__dict__.update(log.directory().__dict__)
        if "b" not in published:
            directory._keys.pop(key_id_of(log.keys["b"]))
        return directory

    monkeypatch.setattr(sources, "read_records", read)
    monkeypatch.setattr(sources, "open_key_directory", keys)
    monkeypatch.setattr(S3ArtifactStore, "from_settings", classmethod(lambda cls, s: log.store))

    code = main(["audit", "verify", "--job", JOB, "--report", str(tmp_path)])

    data = json.loads((tmp_path / "audit.json").read_text())
    assert {c["name"]: c["findings"] for c in data["checks"]}["signatures"] == []
    assert code == 0


def test_two_decisions_on_one_job_fail_check_2() -> None:
    log = job_log()
    accepted = next(s for s in log.records if s.topic == "job.accepted")
    first = JobAccepted.model_validate_json(accepted.value or b"")
    again = first.model_copy(update={"event_id": str(uuid.uuid4())})
    log.add("orchestration", again, "accepted-again")

    problems = [m for _, m in findings(audit(log), "histories")]

    assert problems == ["2 decisions (job.accepted, job.rejected); one expected"]


def test_a_job_that_ends_without_being_accepted_fails_check_2() -> None:
    log = Log()
    spec = JobSpec(mode=JobMode.FEDERATED, model="mlp", dataset="ds", rounds=2)
    log.add("gateway", JobRequested.create(source="gateway", job_id=JOB, tenant="t", spec=spec),
            "requested")  # fmt: skip
    log.add("orchestration", JobFailed.create(source="orchestration", job_id=JOB, code="x",
            message="never ran", round=0), "failed")  # fmt: skip

    problems = [m for _, m in findings(audit(log), "histories")]

    assert problems == ["the job ended (job.completed or job.failed) without job.accepted"]


def test_without_the_artifact_keys_a_failed_check_4_says_why_objects_cannot_match() -> None:
    log = job_log()
    key = log.where["model-1"]
    log.store.objects[key] = tensors_to_bytes(_arrays(9.0))

    def notes(report: AuditReport) -> list[str]:
        return next(c for c in report.checks if c.name == "artifacts").notes

    without = audit(log, artifact_keys=False)
    assert [w for w, _ in findings(without, "artifacts")] == [key]
    assert NO_ARTIFACT_KEYS in notes(without)
    assert NO_ARTIFACT_KEYS not in notes(audit(log))  # the keys were given: no such note
    assert NO_ARTIFACT_KEYS not in notes(audit(job_log(), artifact_keys=False))  # nothing failed
