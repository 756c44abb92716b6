"""The registry certifies only what the privacy accountant's ledger (``budget.updated``) says."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from fedbus.bus import InMemoryBus
from fedbus.bus.codec import decode_event
from fedbus.events import (
    DeadLetter,
    Event,
    JobCompleted,
    ModelRef,
    ModelRegistered,
    PrivacyMode,
    utc_now,
)
from fedbus_registry.deps import Deps
from fedbus_registry.handlers import refuse_overdue

from .fakes import FakeRegistryStore

if TYPE_CHECKING:
    from .conftest import Handlers, Job, MakeJob, Upload

KINDS = ("accepted", "rounds", "ledger", "completed")
WAIT = timedelta(minutes=15)


def registrations(bus: InMemoryBus) -> list[ModelRegistered]:
    return [e for e in bus.events("model.registered") if isinstance(e, ModelRegistered)]


async def models(job: Job, upload: Upload) -> list[ModelRef]:
    return [await upload(job.job_id, number) for number in (1, 2)]


def events_of(
    job: Job,
    final: list[ModelRef],
    *,
    claimed: float,
    ledger: tuple[float, ...] = (3.1, 7.96),
) -> dict[str, list[Event]]:
    """A two-round DP job's events by kind; the accountant's total is ``ledger`` per round."""
    return {
        "accepted": [job.accepted()],
        "rounds": [job.round(n, ["c1", "c2"], final[n - 1]) for n in (1, 2)],
        "ledger": [job.budget(n, eps) for n, eps in enumerate(ledger, start=1)],
        "completed": [job.completed(final[-1], guarantee=job.guarantee(claimed))],
    }


async def deliver(bus: InMemoryBus, handlers: Handlers, events: list[Event]) -> None:
    """Publish and deliver one at a time: each event is handled before the next arrives."""
    for event in events:
        await bus.publish(event)
        await bus.drain(handlers)


@pytest.mark.parametrize("order", list(itertools.permutations(KINDS)), ids="-".join)
async def test_in_any_order_an_honest_job_registers_with_the_ledgers_epsilon(
    order: tuple[str, ...],
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    by_kind = events_of(job, await models(job, upload), claimed=7.96 * (1 + 1e-12))

    await deliver(bus, handlers, [e for kind in order for e in by_kind[kind]])

    [event] = registrations(bus)
    assert event.guarantee is not None
    assert event.guarantee.epsilon == 7.96  # the ledger's figure, not the claim's
    assert event.guarantee.rounds == 2
    version = await store.version_for_job(job.job_id)
    assert version is not None
    assert version.spec.guarantee == event.guarantee
    assert bus.dead_letters("job.completed") == []


@pytest.mark.parametrize("order", list(itertools.permutations(KINDS)), ids="-".join)
async def test_in_any_order_a_forged_epsilon_is_dead_lettered_and_never_registered(
    order: tuple[str, ...],
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    by_kind = events_of(job, await models(job, upload), claimed=0.01)

    await deliver(bus, handlers, [e for kind in order for e in by_kind[kind]])

    [letter] = bus.dead_letters("job.completed")
    assert (
        "job.completed says epsilon 0.01, the accountant's ledger says 7.96 after round 2"
        in letter.error_message
    )
    original = decode_event(letter.original_value())
    assert isinstance(original, JobCompleted)
    assert original.job_id == job.job_id
    assert original.guarantee is not None
    assert original.guarantee.epsilon == 0.01
    assert registrations(bus) == []
    assert await store.version_for_job(job.job_id) is None
    assert await store.versions(job.tenant, "cnn-mnist") == []


async def test_a_replayed_forgery_is_dead_lettered_again_and_a_late_ledger_changes_nothing(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job(privacy=PrivacyMode.LOCAL_DP)
    final = await models(job, upload)
    by_kind = events_of(job, final, claimed=0.01)
    await deliver(bus, handlers, [e for kind in KINDS for e in by_kind[kind]])

    again = job.completed(final[-1], guarantee=job.guarantee(7.96))
    await deliver(bus, handlers, [again, job.budget(3, 9.0), job.round(2, ["c1"], final[-1])])

    letters = bus.dead_letters("job.completed")
    assert len(letters) == 2
    assert "was refused" in letters[1].error_message
    assert registrations(bus) == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"delta": 1e-3}, "job.completed says delta 0.001, the accountant's ledger says 1e-05"),
        ({"mode": PrivacyMode.LOCAL_DP}, "job.completed says mode local_dp, the job asked for"),
        ({"epsilon": 7.96 * (1 + 1e-6)}, "the accountant's ledger says 7.96 after round 2"),
    ],
)
async def test_mode_delta_and_epsilon_must_all_agree(
    change: dict[str, object],
    says: str,
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    final = await models(job, upload)
    by_kind = events_of(job, final, claimed=7.96)
    claim = job.guarantee(7.96).model_copy(update=change)
    by_kind["completed"] = [job.completed(final[-1], guarantee=claim)]

    await deliver(bus, handlers, [e for kind in KINDS for e in by_kind[kind]])

    [letter] = bus.dead_letters("job.completed")
    assert says in letter.error_message
    assert registrations(bus) == []


async def test_a_dp_job_without_a_ledger_waits_then_is_refused(
    bus: InMemoryBus,
    handlers: Handlers,
    deps: Deps,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    by_kind = events_of(job, await models(job, upload), claimed=0.01)
    await deliver(bus, handlers, by_kind["accepted"] + by_kind["rounds"] + by_kind["completed"])

    assert await refuse_overdue(deps, now=utc_now(), wait=WAIT) == []
    assert bus.dead_letters("job.completed") == []

    later = utc_now() + WAIT + timedelta(seconds=1)
    assert await refuse_overdue(deps, now=later, wait=WAIT) == [job.job_id]
    assert await refuse_overdue(deps, now=later, wait=WAIT) == []  # refused once

    [letter] = bus.dead_letters("job.completed")
    assert "job.completed says epsilon 0.01 after 2 round(s)" in letter.error_message
    assert "no budget.updated for round(s) 1, 2" in letter.error_message
    await deliver(bus, handlers, by_kind["ledger"])  # too late: the refusal stands
    assert registrations(bus) == []
    assert await store.version_for_job(job.job_id) is None


async def test_an_incomplete_ledger_is_refused_in_the_end(
    bus: InMemoryBus, handlers: Handlers, deps: Deps, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job(privacy=PrivacyMode.LOCAL_DP)
    by_kind = events_of(job, await models(job, upload), claimed=7.96)
    events = by_kind["accepted"] + by_kind["rounds"] + by_kind["ledger"][:1] + by_kind["completed"]
    await deliver(bus, handlers, events)

    later = utc_now() + WAIT + timedelta(seconds=1)
    assert await refuse_overdue(deps, now=later, wait=WAIT) == [job.job_id]

    [letter] = bus.dead_letters("job.completed")
    assert "no budget.updated for round(s) 2" in letter.error_message
    assert registrations(bus) == []


async def test_jobs_waiting_for_their_own_events_are_not_refused_for_the_ledger(
    bus: InMemoryBus, handlers: Handlers, deps: Deps, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    by_kind = events_of(job, await models(job, upload), claimed=7.96)
    await deliver(bus, handlers, by_kind["rounds"] + by_kind["completed"])  # no job.accepted

    later = utc_now() + WAIT + timedelta(seconds=1)
    assert await refuse_overdue(deps, now=later, wait=WAIT) == []

    await deliver(bus, handlers, by_kind["accepted"] + by_kind["ledger"])
    [event] = registrations(bus)
    assert event.guarantee is not None
    assert event.guarantee.epsilon == 7.96


async def test_a_job_without_dp_registers_with_no_guarantee_and_needs_no_ledger(
    bus: InMemoryBus,
    handlers: Handlers,
    deps: Deps,
    upload: Upload,
    make_job: MakeJob,
) -> None:
    job = make_job()
    final = await models(job, upload)
    events = [job.accepted(), *(job.round(n, ["c1"], final[n - 1]) for n in (1, 2))]
    await deliver(bus, handlers, [*events, job.completed(final[-1])])

    [event] = registrations(bus)
    assert event.guarantee is None
    assert await refuse_overdue(deps, now=utc_now() + 2 * WAIT, wait=WAIT) == []
    assert bus.dead_letters("job.completed") == []


async def test_a_job_without_dp_that_claims_a_guarantee_is_refused(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job()
    final = await models(job, upload)
    events = [job.accepted(), *(job.round(n, ["c1"], final[n - 1]) for n in (1, 2))]
    claim = job.guarantee(0.01).model_copy(update={"mode": PrivacyMode.CENTRAL_DP})
    await deliver(bus, handlers, [*events, job.completed(final[-1], guarantee=claim)])

    [letter] = bus.dead_letters("job.completed")
    assert isinstance(letter, DeadLetter)
    assert "did not ask for differential privacy" in letter.error_message
    assert "epsilon 0.01" in letter.error_message
    assert registrations(bus) == []


async def test_a_diverged_round_counts_in_the_ledger_figure(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    """Round 2 diverged and was discarded: 2 good rounds (1 and 3), but 3 rounds charged."""
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    final = [await upload(job.job_id, n) for n in (1, 2, 3)]
    events: list[Event] = [job.accepted()]
    events += [job.round(n, ["c1", "c2"], final[n - 1]) for n in (1, 2, 3)]
    events += [job.budget(n, eps) for n, eps in ((1, 1.0), (2, 1.5), (3, 2.1))]
    events.append(job.completed(final[2], rounds=2, guarantee=job.guarantee(2.1, rounds=3)))

    await deliver(bus, handlers, events)

    [event] = registrations(bus)
    assert event.guarantee is not None
    assert (event.guarantee.epsilon, event.guarantee.rounds) == (2.1, 3)


async def test_a_claim_that_leaves_out_a_charged_round_is_refused(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    final = [await upload(job.job_id, n) for n in (1, 2, 3)]
    events: list[Event] = [job.accepted()]
    events += [job.round(n, ["c1", "c2"], final[n - 1]) for n in (1, 2, 3)]
    events += [job.budget(n, eps) for n, eps in ((1, 1.0), (2, 1.5), (3, 2.1))]
    events.append(job.completed(final[2], rounds=2, guarantee=job.guarantee(1.5, rounds=2)))

    await deliver(bus, handlers, events)

    [letter] = bus.dead_letters("job.completed")
    assert (
        "says epsilon 1.5, the accountant's ledger says 2.1 after round 3" in letter.error_message
    )
    assert registrations(bus) == []


async def test_a_true_guarantee_on_another_jobs_model_is_refused(
    bus: InMemoryBus,
    handlers: Handlers,
    upload: Upload,
    make_job: MakeJob,
    store: FakeRegistryStore,
) -> None:
    job, other = make_job(privacy=PrivacyMode.CENTRAL_DP), make_job()
    by_kind = events_of(job, await models(job, upload), claimed=7.96)
    foreign = await upload(other.job_id, 2)  # a real artifact, trained by a job without DP
    by_kind["completed"] = [job.completed(foreign, guarantee=job.guarantee(7.96))]

    await deliver(bus, handlers, [e for kind in KINDS for e in by_kind[kind]])

    [letter] = bus.dead_letters("job.completed")
    assert "no round's global model of this job" in letter.error_message
    assert registrations(bus) == []
    assert await store.version_for_job(job.job_id) is None


async def test_a_claim_of_two_billion_rounds_waits_listing_a_few_and_is_refused_when_overdue(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob, deps: Deps
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    final = await models(job, upload)
    by_kind = events_of(job, final, claimed=7.96)
    huge = job.guarantee(7.96, rounds=2**31 - 1)
    by_kind["completed"] = [job.completed(final[-1], guarantee=huge)]

    await deliver(bus, handlers, [e for kind in KINDS for e in by_kind[kind]])
    assert registrations(bus) == []
    assert bus.dead_letters("job.completed") == []

    refused = await refuse_overdue(deps, now=utc_now() + 2 * WAIT, wait=WAIT)

    assert refused == [job.job_id]
    [letter] = bus.dead_letters("job.completed")
    assert "round(s) 3, 4, 5" in letter.error_message
    assert len(letter.error_message) < 2000
    assert registrations(bus) == []


async def test_a_different_second_job_completed_is_dead_lettered_and_the_first_is_judged(
    bus: InMemoryBus, handlers: Handlers, upload: Upload, make_job: MakeJob
) -> None:
    job = make_job(privacy=PrivacyMode.CENTRAL_DP)
    final = await models(job, upload)
    by_kind = events_of(job, final, claimed=7.96)
    other_claim = job.completed(final[-1], guarantee=job.guarantee(0.01))
    resent = job.completed(final[-1], guarantee=job.guarantee(7.96))  # same claims, new id
    events = [*by_kind["accepted"], *by_kind["rounds"], *by_kind["completed"], other_claim, resent]

    await deliver(bus, handlers, [*events, *by_kind["ledger"]])

    [letter] = bus.dead_letters("job.completed")
    assert "already has a different job.completed" in letter.error_message
    assert letter.original_value()
    assert decode_event(letter.original_value()).event_id == (other_claim.event_id)
    [event] = registrations(bus)
    assert event.guarantee is not None
    assert event.guarantee.epsilon == 7.96
