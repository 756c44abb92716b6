"""Handlers over an in-memory bus, artifact store and registry store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from fedbus.bus import InMemoryBus
from fedbus.errors import NonRetryableError
from fedbus.events import (
    JobStatus,
    ModelRef,
    ModelRegistered,
    PrivacyGuarantee,
    PrivacyMode,
)
from fedbus.storage import InMemoryArtifactStore
from fedbus_registry.deps import Deps
from fedbus_registry.handlers import HANDLERS

from .fakes import FakeRegistryStore

if TYPE_CHECKING:
    from .conftest import Handlers, Job, MakeJob, Upload


async def run_job(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    job: Job,
    *,
    participants: Sequence[list[str]] = (["c1", "c2"], ["c2", "c3"]),
) -> ModelRef | None:
    """Publish a two-round job's events and deliver them; returns the final model."""
    await bus.publish(job.accepted())
    model: ModelRef | None = None
    for number, clients in enumerate(participants, start=1):
        model = await upload(job.job_id, number)
        await bus.publish(job.round(number, list(clients), model))
    await bus.publish(job.completed(model, accuracy=0.9, loss=0.2))
    await bus.drain(handlers)
    return model


def registrations(bus: InMemoryBus) -> list[ModelRegistered]:
    """The ``model.registered`` events published so far, in order."""
    events = []
    for event in bus.events("model.registered"):
        assert isinstance(event, ModelRegistered)
        events.append(event)
    return events


async def test_a_completed_job_is_registered_as_version_one(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job()

    final = await run_job(bus, handlers, upload, job)

    [event] = registrations(bus)
    assert (event.job_id, event.name, event.version) == (job.job_id, "cnn-mnist", 1)
    assert event.artifact == final
    assert event.metrics == {"accuracy": 0.9, "loss": 0.2}
    assert event.guarantee is None
    assert event.source == "model-registry"
    version = await store.version(job.tenant, "cnn-mnist", 1)
    assert version is not None
    assert version.spec.participants == ("c1", "c2", "c3")
    assert version.parent_version is None
    assert version.spec.rounds == 2


async def test_the_next_job_of_a_name_is_the_next_version_with_its_parent(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    await run_job(bus, handlers, upload, make_job())
    second = make_job()

    await run_job(bus, handlers, upload, second)

    assert [e.version for e in registrations(bus)] == [1, 2]
    version = await store.version_for_job(second.job_id)
    assert version is not None
    assert (version.version, version.parent_version) == (2, 1)


async def test_tenants_and_datasets_have_their_own_version_lines(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob, tenant: str
) -> None:
    await run_job(bus, handlers, upload, make_job())
    await run_job(bus, handlers, upload, make_job(dataset="fashion"))
    await run_job(bus, handlers, upload, make_job(tenant=f"{tenant}-b"))

    registered = [(e.name, e.version) for e in registrations(bus)]
    assert registered == [("cnn-mnist", 1), ("cnn-fashion", 1), ("cnn-mnist", 1)]


async def test_a_redelivered_job_completed_registers_nothing_new(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job()
    final = await run_job(bus, handlers, upload, job)
    done = job.completed(final)

    again = await handlers[type(done)](done)
    again_same = await handlers[type(done)](done)

    assert again is not None
    assert again_same is not None
    first = registrations(bus)[0]
    assert [e.event_id for e in again] == [first.event_id]
    assert [e.event_id for e in again_same] == [first.event_id]
    assert [v.version for v in await store.versions(job.tenant, "cnn-mnist")] == [1]


async def test_events_in_any_order_register_once_all_facts_are_in(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job()
    model1, model2 = await upload(job.job_id, 1), await upload(job.job_id, 2)
    await bus.publish(job.completed(model2))
    await bus.publish(job.round(2, ["c2"], model2))
    await bus.drain(handlers)
    assert registrations(bus) == []

    await bus.publish(job.accepted())
    await bus.drain(handlers)
    assert registrations(bus) == []  # round 1 still missing

    await bus.publish(job.round(1, ["c1"], model1))
    await bus.drain(handlers)

    [event] = registrations(bus)
    assert event.version == 1
    version = await store.version_for_job(job.job_id)
    assert version is not None
    assert version.spec.participants == ("c1", "c2")


async def test_a_final_model_with_a_wrong_hash_is_refused(
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
    artifacts: InMemoryArtifactStore,
) -> None:
    job = make_job()
    await handlers[type(job.accepted())](job.accepted())
    model = await upload(job.job_id, 1)
    await handlers[type(job.round(1, ["c1"], model))](job.round(1, ["c1"], model))
    artifacts.objects[model.object_key] = b"tampered" + artifacts.objects[model.object_key][8:]

    with pytest.raises(NonRetryableError, match="SHA-256"):
        await handlers[type(job.completed(model))](job.completed(model, rounds=1))

    assert await store.version_for_job(job.job_id) is None


async def test_a_missing_final_model_is_refused(
    handlers: Handlers, make_job: MakeJob, store: FakeRegistryStore
) -> None:
    job = make_job()
    await handlers[type(job.accepted())](job.accepted())
    key = f"jobs/{job.job_id}/nothing/" + "c" * 64
    ghost = ModelRef(object_key=key, size_bytes=1, sha256="c" * 64)

    with pytest.raises(NonRetryableError, match="no artifact"):
        await handlers[type(job.completed(ghost))](job.completed(ghost, rounds=0))

    assert await store.version_for_job(job.job_id) is None


async def test_budget_exhausted_jobs_carry_their_guarantee(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job(privacy=PrivacyMode.LOCAL_DP)
    model = await upload(job.job_id, 1)
    guarantee = PrivacyGuarantee(
        mode=PrivacyMode.LOCAL_DP, epsilon=2.9, delta=1e-5, accountant="rdp",
        noise_multiplier=1.1, clipping_norm=1.0, rounds=1,
    )  # fmt: skip
    await bus.publish(job.accepted())
    await bus.publish(job.round(1, ["c1"], model, accuracy=0.6))
    await bus.publish(job.budget(1, 2.9, exhausted=True))
    await bus.publish(
        job.completed(model, rounds=1, status=JobStatus.BUDGET_EXHAUSTED, guarantee=guarantee)
    )

    await bus.drain(handlers)

    [event] = registrations(bus)
    assert event.guarantee == guarantee
    assert event.metrics == {"accuracy": 0.6}
    version = await store.version_for_job(job.job_id)
    assert version is not None
    assert version.spec.status is JobStatus.BUDGET_EXHAUSTED
    assert version.spec.privacy_mode is PrivacyMode.LOCAL_DP


async def test_cancelled_and_modelless_jobs_are_not_registered(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    cancelled, empty = make_job(), make_job()
    model = await upload(cancelled.job_id, 1)
    for job in (cancelled, empty):
        await bus.publish(job.accepted())
    await bus.publish(cancelled.round(1, ["c1"], model))
    await bus.publish(cancelled.completed(model, rounds=1, status=JobStatus.CANCELLED))
    await bus.publish(empty.completed(None, rounds=0, status=JobStatus.CANCELLED))

    await bus.drain(handlers)

    assert registrations(bus) == []


async def test_cancelled_jobs_are_registered_when_configured(
    bus: InMemoryBus,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
    artifacts: InMemoryArtifactStore,
) -> None:
    handlers = HANDLERS.bind(
        Deps(store=store, artifacts=artifacts, dead_letters=bus, register_cancelled=True)
    )
    job = make_job()
    model = await upload(job.job_id, 1)
    await bus.publish(job.accepted())
    await bus.publish(job.round(1, ["c1"], model))
    await bus.publish(job.completed(model, rounds=1, status=JobStatus.CANCELLED))

    await bus.drain(handlers)

    [event] = registrations(bus)
    assert event.version == 1
