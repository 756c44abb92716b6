"""Kafka ACLs from the topic catalog: what each principal may do, and what it may not."""

from __future__ import annotations

import pytest

from fedbus.bus.acls import (
    SERVICES,
    AclBinding,
    Operation,
    PatternType,
    ResourceType,
    auditor_acls,
    service_acls,
    trainer_acls,
    upstream_acls,
)
from fedbus.events import load_topics

CATALOG = load_topics()


def topics(bindings: list[AclBinding], operation: Operation) -> set[str]:
    return {
        b.resource_name
        for b in bindings
        if b.resource_type is ResourceType.TOPIC and b.operation is operation
    }


def writers_of(topic: str) -> set[str]:
    principals = {
        b.principal
        for service in SERVICES
        for b in service_acls(CATALOG, service)
        if b.resource_name == topic and b.operation is Operation.WRITE
    }
    principals |= {b.principal for b in trainer_acls(CATALOG, "x") if b.resource_name == topic
                   and b.operation is Operation.WRITE}  # fmt: skip
    principals |= {b.principal for b in upstream_acls(CATALOG, "x") if b.resource_name == topic
                   and b.operation is Operation.WRITE}  # fmt: skip
    return principals


def test_each_audit_event_has_exactly_one_writing_service() -> None:
    assert writers_of("job.completed") == {"svc-orchestration"}
    assert writers_of("job.accepted") == {"svc-orchestration"}
    assert writers_of("round.completed") == {"svc-aggregator"}
    assert writers_of("budget.updated") == {"svc-privacy-accountant"}
    assert writers_of("model.registered") == {"svc-model-registry"}
    assert writers_of("update.submitted") == {"trainer-x"}


def test_a_service_writes_what_it_produces_and_its_dead_letters_reads_what_it_consumes() -> None:
    acls = service_acls(CATALOG, "model-registry")

    assert topics(acls, Operation.WRITE) == {
        "model.registered", "job.accepted.dlq", "job.completed.dlq", "round.completed.dlq",
        "budget.updated.dlq",
    }  # fmt: skip
    assert topics(acls, Operation.READ) == {
        "job.accepted",
        "job.completed",
        "round.completed",
        "budget.updated",
        "key.published",
    }
    assert {b.principal for b in acls} == {"svc-model-registry"}


def test_service_groups_are_prefixed_by_the_service_name() -> None:
    groups = [b for b in service_acls(CATALOG, "aggregator") if b.operation is Operation.READ
              and b.resource_type is ResourceType.GROUP]  # fmt: skip

    assert [(g.resource_name, g.pattern) for g in groups] == [("aggregator", PatternType.PREFIXED)]


def test_a_trainer_writes_its_beats_progress_and_updates_and_reads_no_updates() -> None:
    acls = trainer_acls(CATALOG, "site-a")
    declines = {t.name for t in CATALOG.topics} & {"round.declined"}  # a site's refusals

    assert topics(acls, Operation.WRITE) == {
        "trainer.heartbeat",
        "progress",
        "update.submitted",
        "round.assigned.dlq",
        *declines,
    }
    assert topics(acls, Operation.READ) == {"round.assigned.site-a", "key.published"}
    groups = {(b.resource_name, b.pattern) for b in acls if b.resource_type is ResourceType.GROUP
              and b.operation is Operation.READ}  # fmt: skip
    assert groups == {("trainer-site-a", PatternType.LITERAL)}


def test_an_upstream_principal_is_bound_to_its_tenant_and_may_only_request() -> None:
    acls = upstream_acls(CATALOG, "acme")

    assert {b.principal for b in acls} == {"upstream-acme"}
    assert topics(acls, Operation.WRITE) == {
        "upstream.job.requested.acme",
        "upstream.job.cancel.requested.acme",
    }
    assert topics(acls, Operation.READ) == {"key.published"}  # the keys, to verify
    assert topics(acls, Operation.CREATE) == set()  # its topics are made for it
    assert all(b.pattern is PatternType.LITERAL for b in acls)  # never another tenant's


def test_only_the_gateway_writes_the_requests_and_the_services_read_every_intake() -> None:
    assert writers_of("job.requested") == {"svc-gateway"}
    assert writers_of("job.cancel.requested") == {"svc-gateway"}
    for service, families in {
        "orchestration": {"upstream.job.requested.", "upstream.job.cancel.requested."},
        "gateway": {"upstream.job.requested."},
    }.items():
        reads = {
            b.resource_name
            for b in service_acls(CATALOG, service)
            if b.resource_type is ResourceType.TOPIC
            and b.operation is Operation.READ
            and b.pattern is PatternType.PREFIXED
        }
        assert reads == families, service


@pytest.mark.parametrize("tenant", ["dlq", "", "-x", "a b", "x" * 101, "a/b"])
def test_a_tenant_that_cannot_name_its_topics_gets_no_principal(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        upstream_acls(CATALOG, tenant)


def test_describe_covers_every_catalog_topic_and_nothing_else_is_granted_on_others() -> None:
    acls = trainer_acls(CATALOG, "t")
    plain = {t.name for t in CATALOG.topics if t.addressed_by is None}

    assert topics(acls, Operation.DESCRIBE) == plain | {"round.assigned.t"}
    assert {b.operation for b in acls} == {
        Operation.READ, Operation.WRITE, Operation.DESCRIBE, Operation.CREATE,
    }  # fmt: skip
    assert topics(acls, Operation.CREATE) == {"round.assigned.t"}  # it may make its own topic


def test_a_trainer_reads_only_its_own_assignments_never_round_started_or_another_trainers() -> None:
    acls = trainer_acls(CATALOG, "site-a")

    named = {b.resource_name for b in acls if b.resource_type is ResourceType.TOPIC}
    assert "round.started" not in topics(acls, Operation.READ)
    assert {n for n in named if n.startswith("round.assigned.")} == {
        "round.assigned.site-a", "round.assigned.dlq",
    }  # fmt: skip
    assert all(b.pattern is PatternType.LITERAL for b in acls if b.resource_type
               is ResourceType.TOPIC)  # fmt: skip


def test_the_aggregator_writes_every_trainers_assignments_and_reads_none() -> None:
    acls = service_acls(CATALOG, "aggregator")

    family = {(b.operation, b.pattern) for b in acls if b.resource_name == "round.assigned."}
    assert family == {
        (Operation.WRITE, PatternType.PREFIXED),
        (Operation.CREATE, PatternType.PREFIXED),
        (Operation.DESCRIBE, PatternType.PREFIXED),
    }
    assert not {n for n in topics(acls, Operation.READ) if n.startswith("round.assigned")}
    assert "round.started" in topics(acls, Operation.READ)


def test_the_reserved_client_id_dlq_gets_no_principal() -> None:
    with pytest.raises(ValueError, match="reserved"):
        trainer_acls(CATALOG, "dlq")
    with pytest.raises(ValueError, match="letters"):
        trainer_acls(CATALOG, "../evil")


def test_every_principal_reads_the_published_keys_and_none_of_them_writes_them() -> None:
    principals = [service_acls(CATALOG, service) for service in SERVICES]
    principals += [trainer_acls(CATALOG, "site-a"), upstream_acls(CATALOG, "acme")]

    for acls in principals:
        who = acls[0].principal
        keys = {(b.operation, b.pattern) for b in acls if b.resource_name == "key.published"}
        assert keys == {
            (Operation.READ, PatternType.LITERAL),
            (Operation.DESCRIBE, PatternType.LITERAL),
        }, who
    assert writers_of("key.published") == set()  # only the super user (the operator) writes
    assert not [b for acls in principals for b in acls if b.pattern is PatternType.PREFIXED
                and "key.published".startswith(b.resource_name)]  # fmt: skip


def test_the_auditor_reads_every_event_topic_writes_nothing_and_no_upload_url() -> None:
    acls = auditor_acls(CATALOG)

    read = topics(acls, Operation.READ)
    assert {b.operation for b in acls} == {Operation.READ, Operation.DESCRIBE}
    assert {
        "job.requested",
        "round.started",
        "update.submitted",
        "round.completed",
        "budget.updated",
        "model.registered",
        "key.published",
        "job.completed.dlq",
    } <= read
    assert not any(name.startswith("round.assigned") for name in read)  # live PUT URLs
    prefixed = {b.resource_name for b in acls if b.pattern is PatternType.PREFIXED}
    assert prefixed == {"upstream.job.requested.", "upstream.job.cancel.requested."}
    assert not [b for b in acls if b.resource_type is ResourceType.GROUP]
