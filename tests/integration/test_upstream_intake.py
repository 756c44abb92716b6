"""An outside producer speaks for its own tenant only: its intake topics, on the real broker.

``stack.py principal upstream <tenant>`` creates ``upstream-<tenant>`` and its two intake
topics. The broker lets it write nothing else (not ``job.requested``, not another tenant's
intake); orchestration, running as its own principal, takes the tenant from the topic and
dead-letters a request that names another. Skipped on a stack without SASL.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from fedbus.bus import EventProducer
from fedbus.events import (
    DeadLetter,
    Event,
    JobAccepted,
    JobCancelRequested,
    JobRejected,
    JobRequested,
    JobSpec,
    TrainerHeartbeat,
    TrainerStatus,
    encode,
    schema_dir,
)
from fedbus.events.docgen import render
from fedbus.settings import FedbusSettings

from .announce import announced
from .harness import (
    REPO,
    EventWatcher,
    ServiceProcess,
    create_principal,
    fresh_group,
    principal_env,
    principal_settings,
    unique,
)
from .test_kafka_acls import SEND_LIMIT_S, secured, send
from .test_orchestration_service import _announce_trainers, _wait_ready

__all__ = ["secured"]  # the fixture, shared with test_kafka_acls


def request(tenant: str, *, source: str = "upstream") -> JobRequested:
    """The documented example request (schemas/examples), for ``tenant``, with a new job id."""
    example = json.loads((schema_dir() / "examples" / "job.requested.json").read_text())
    return JobRequested.create(
        source=source, job_id=str(uuid.uuid4()), tenant=tenant,
        spec=JobSpec.model_validate(example["spec"]),
    )  # fmt: skip


async def send_on(settings: FedbusSettings, topic: str, event: Event) -> None:
    """Publish ``event`` on ``topic`` (any topic: the broker decides) as ``settings``."""
    async with EventProducer(settings, client_id="it-intake") as producer:
        await producer.publish_raw(topic, encode(event), key=event.job_id.encode())


@pytest.fixture
def orchestration(secured: FedbusSettings, tmp_path: Path) -> Iterator[str]:
    """Orchestration as ``svc-orchestration`` with a fresh group; yields the group."""
    group = unique("orchestration-intake")  # its groups start with its name
    asyncio.run(fresh_group(secured, group, ["job.requested", "job.cancel.requested"]))
    proc = ServiceProcess.start(
        "orchestration", "fedbus_orchestration", log_dir=tmp_path,
        env={"FEDBUS_CONSUMER_GROUP": group}, principal="svc-orchestration",
    )  # fmt: skip
    try:
        _wait_ready(proc)
        yield group
    finally:
        proc.stop()


async def test_an_outside_producer_writes_only_its_own_intake(secured: FedbusSettings) -> None:
    tenant, other = unique("acme"), unique("globex")
    upstream = principal_settings(secured, create_principal(secured, "upstream", tenant))
    create_principal(secured, "upstream", other)  # the other's intake exists

    with pytest.raises(TopicAuthorizationFailedError):  # only the gateway writes requests
        await send(upstream, request(tenant))
    with pytest.raises(TopicAuthorizationFailedError):
        await send(upstream, JobCancelRequested.create(
            source="upstream", job_id="j", tenant=tenant, requested_by="it"))  # fmt: skip
    with pytest.raises(TopicAuthorizationFailedError):  # nor another tenant's intake
        await send_on(upstream, f"upstream.job.requested.{other}", request(other))
    with pytest.raises(TopicAuthorizationFailedError):
        await send_on(upstream, f"upstream.job.cancel.requested.{other}",
                      JobCancelRequested.create(source="upstream", job_id="j", tenant=other,
                                                requested_by="it"))  # fmt: skip

    async with EventWatcher(secured, [f"upstream.job.cancel.requested.{tenant}"]) as watch:
        cancel = JobCancelRequested.create(source="upstream", job_id="j", tenant=tenant,
                                           requested_by="it")  # fmt: skip
        await send_on(upstream, f"upstream.job.cancel.requested.{tenant}", cancel)
        assert await watch.wait_for(lambda e: e.event_id == cancel.event_id, limit_s=SEND_LIMIT_S)


async def test_orchestration_takes_the_tenant_from_the_intake_not_the_payload(
    secured: FedbusSettings, orchestration: str
) -> None:
    tenant, victim = unique("acme"), unique("victim")
    upstream = principal_settings(secured, create_principal(secured, "upstream", tenant))
    intake = f"upstream.job.requested.{tenant}"
    forged = request(victim, source="gateway")  # acme's principal speaking for another tenant
    honest = request(tenant, source="gateway")

    topics = ["upstream.job.requested.dlq", "job.accepted", "job.rejected"]
    async with EventWatcher(secured, topics) as watch:
        await send_on(upstream, intake, forged)
        letter = await watch.wait_for(
            lambda e: isinstance(e, DeadLetter) and e.source == orchestration
            and json.loads(e.original_value())["job_id"] == forged.job_id,
            limit_s=90,
        )  # fmt: skip
        await send_on(upstream, intake, honest)
        answer = await watch.wait_for(lambda e: e.job_id == honest.job_id, limit_s=90)
        seen = list(watch.seen)

    assert isinstance(letter, DeadLetter)
    assert letter.original_topic == intake
    assert repr(victim) in letter.error_message
    assert repr(tenant) in letter.error_message
    assert not [e for e in seen if e.job_id == forged.job_id and e.type != "dead.letter"]
    # No trainer announced the dataset, so the honest request is refused: for its own tenant.
    assert isinstance(answer, JobRejected)
    assert answer.tenant == tenant


async def test_the_documented_example_without_fedbus_is_accepted(
    secured: FedbusSettings, orchestration: str, tmp_path: Path
) -> None:
    """docs/events.md's outside-publisher block, byte for byte, with ``fedbus`` unimportable.

    It signs with ``cryptography`` alone and publishes with a plain aiokafka producer; three
    live trainers announce the example's model and dataset, so orchestration accepts the job
    for the tenant of the intake. The test then cancels it and drains the stand-in trainers.
    """
    page = render()
    block = page.split("With a plain aiokafka producer")[1].split("```python\n")[1]
    block = block.split("```")[0]
    imported = {
        name.split(".")[0]
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
        )
    }
    assert not {m for m in imported if m.startswith("fedbus")}, imported
    script = tmp_path / "publish.py"
    script.write_text(block)
    guard = (  # any `import fedbus...` in the block would raise ImportError
        "import runpy, sys; sys.modules['fedbus'] = None; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    tenant = unique("acme")
    principal = create_principal(secured, "upstream", tenant)
    env = {
        **os.environ,
        **principal_env(principal),
        "FEDBUS_KAFKA_BOOTSTRAP_SERVERS": secured.kafka_bootstrap_servers,
        "TENANT": tenant,
    }
    example = json.loads((schema_dir() / "examples" / "job.requested.json").read_text())
    trainers = [unique("doc-trainer") for _ in range(example["spec"]["min_clients"])]

    async with EventProducer(secured, client_id="it-doc-example") as producer:
        await _announce_trainers(secured, producer, example["spec"]["dataset"], trainers)
        try:
            async with EventWatcher(secured, ["job.accepted", "job.rejected"]) as watch:
                done = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-c", guard], cwd=REPO, env=env,
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                job_id = done.stdout.strip()
                answer = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=90)
            if isinstance(answer, JobAccepted):
                await send_on(
                    principal_settings(secured, principal),
                    f"upstream.job.cancel.requested.{tenant}",
                    JobCancelRequested.create(source="upstream", job_id=job_id, tenant=tenant,
                                              requested_by="it"),
                )  # fmt: skip
        finally:
            await producer.publish_many(  # the stand-ins leave: no later job selects them
                TrainerHeartbeat.create(
                    source="trainer", job_id="", client_id=cid, device="cpu",
                    **announced(example["spec"]["dataset"], 100),
                    status=TrainerStatus.DRAINING, capacity=0, interval_seconds=60,
                )
                for cid in trainers
            )  # fmt: skip

    assert isinstance(answer, JobAccepted), answer
    assert answer.tenant == tenant
