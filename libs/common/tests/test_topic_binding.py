"""What a record's topic implies about its event: type, addressee, and who wrote it."""

from __future__ import annotations

import json
import re

import pytest

from fedbus.bus.consumer import subscription_pattern
from fedbus.events import JobCancelRequested, JobRequested, JobSpec, load_topics
from fedbus.events.schemas import schema_dir

CATALOG = load_topics()


def request(tenant: str, source: str = "evil") -> JobRequested:
    example = json.loads((schema_dir() / "examples" / "job.requested.json").read_text())
    return JobRequested.create(
        source=source,
        job_id="job-1",
        tenant=tenant,
        spec=JobSpec.model_validate(example["spec"]),
    )


def test_a_request_on_its_tenants_intake_takes_its_source_from_the_topic() -> None:
    admitted = CATALOG.admit(request("acme", source="gateway"), "upstream.job.requested.acme")

    assert admitted.tenant == "acme"
    assert admitted.source == "upstream-acme"  # not what the payload claimed


def test_a_request_for_another_tenant_on_an_intake_is_refused_with_both_names() -> None:
    with pytest.raises(ValueError) as refused:
        CATALOG.admit(request("other"), "upstream.job.requested.acme")

    assert "'other'" in str(refused.value)
    assert "'acme'" in str(refused.value)


def test_a_cancel_for_another_tenant_is_refused_on_the_cancel_intake() -> None:
    cancel = JobCancelRequested.create(source="x", job_id="job-1", tenant="other", requested_by="x")
    with pytest.raises(ValueError, match="tenant"):
        CATALOG.admit(cancel, "upstream.job.cancel.requested.acme")
    assert CATALOG.admit(cancel, "upstream.job.cancel.requested.other").source == "upstream-other"


def test_the_wrong_type_on_an_intake_or_a_plain_topic_is_refused() -> None:
    cancel = JobCancelRequested.create(source="x", job_id="job-1", tenant="acme", requested_by="x")
    with pytest.raises(ValueError, match="do not belong"):
        CATALOG.admit(cancel, "upstream.job.requested.acme")
    with pytest.raises(ValueError, match="do not belong"):
        CATALOG.admit(cancel, "job.requested")


def test_the_gateways_topic_keeps_the_payloads_source() -> None:
    event = request("acme", source="gateway")

    assert CATALOG.admit(event, "job.requested") is event


def test_the_subscription_matches_the_topics_and_members_but_no_dead_letters() -> None:
    pattern = re.compile(subscription_pattern(["job.requested", "round.completed"],
                                              ["upstream.job.requested"]))  # fmt: skip

    for topic in ["job.requested", "round.completed", "upstream.job.requested.acme",
                  "upstream.job.requested.a.b-c_d"]:  # fmt: skip
        assert pattern.match(topic), topic
    refused = [
        "job.requested.dlq",
        "upstream.job.requested.dlq",
        "upstream.job.requested",
        "xjob.requested",
        "job.requestedx",
        "upstream.job.cancel.requested.acme",
    ]
    for topic in refused:
        assert not pattern.match(topic), topic
