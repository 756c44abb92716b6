"""The deployment's lifetime cap per client across jobs, on the real stack (docs/privacy.md).

Every service, the privacy-accountant and three trainers run as processes with
``FEDBUS_CLIENT_LIFETIME_EPSILON`` set so that each client can afford one central-DP release
at noise 2 and not two. The cap travels as the accountant's ``client.budget.updated`` events
through Kafka to orchestration, which then leaves spent clients out of the next job's
selection and rejects a job nobody can afford.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import asyncpg
import pytest

from fedbus.events import (
    ClientBudgetUpdated,
    Event,
    JobCompleted,
    JobRejected,
    JobStatus,
    RoundCompleted,
    RoundStarted,
)
from fedbus.settings import FedbusSettings

from .harness import EventWatcher
from .test_jobs_end_to_end import WATCHED, _spec, _submit, _until_end
from .test_privacy_jobs import (
    DELTA,
    PrivateCluster,
    central_epsilon,
    start_private_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.slow

Z = 2.0
CAP = (central_epsilon(z=Z, rounds=1) + central_epsilon(z=Z, rounds=2)) / 2


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, settings: FedbusSettings
) -> Iterator[PrivateCluster]:
    cluster = start_private_cluster(
        tmp_path_factory.mktemp("lifetime"), settings, name="digits-cap",
        extra_env={"FEDBUS_CLIENT_LIFETIME_EPSILON": repr(CAP)},
    )  # fmt: skip
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def one_release(cluster: PrivateCluster, **overrides: Any) -> dict[str, Any]:
    privacy = {
        "mode": "central_dp", "target_epsilon": 50.0, "delta": DELTA, "noise_multiplier": Z,
        "clipping_norm": 0.01,
    }  # fmt: skip
    fields: dict[str, Any] = {"rounds": 1, "clients_per_round": 2, "min_clients": 1, "seed": 3}
    return _spec(cluster, privacy=privacy, **{**fields, **overrides})


def _announcement_of(client: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, ClientBudgetUpdated) and e.client_id == client


async def _until_orchestration_knows(
    cluster: PrivateCluster, spends: Mapping[str, str], *, limit_s: float = 60
) -> None:
    """Wait until orchestration has stored, for each client, a lifetime spend that counts the
    client's rounds of the given job (what its selection and admission read)."""
    conn = await asyncpg.connect(cluster.settings.postgres_dsn.get_secret_value())
    try:
        deadline = time.monotonic() + limit_s
        while True:
            rows = await conn.fetch(
                "SELECT client_id, rounds FROM orchestration_client_spend WHERE dataset = $1",
                cluster.dataset,
            )
            known = {row["client_id"]: json.loads(row["rounds"]) for row in rows}
            missing = {c: j for c, j in spends.items() if j not in known.get(c, {})}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"orchestration has not stored the spends {missing}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_spent_clients_are_left_out_and_a_job_nobody_can_afford_is_rejected(
    cluster: PrivateCluster,
) -> None:
    clients = {f"{cluster.dataset}-c{i}" for i in range(3)}
    topics = [*WATCHED, "client.budget.updated"]
    async with EventWatcher(cluster.settings, topics) as watch:
        first = await _submit(cluster, one_release(cluster))
        end = await _until_end(watch, first, limit_s=300)
        assert isinstance(end, JobCompleted), cluster.logs()
        assert end.status is JobStatus.COMPLETED
        [done] = [e for e in watch.seen if isinstance(e, RoundCompleted) and e.job_id == first]
        spent = set(done.participants)
        assert len(spent) == 2
        for client in spent:  # the accountant announces each participant's lifetime spend
            announced = await watch.wait_for(_announcement_of(client))
            assert isinstance(announced, ClientBudgetUpdated)
            assert announced.epsilon_spent == pytest.approx(central_epsilon(z=Z, rounds=1))
            assert announced.cap == pytest.approx(CAP)
            assert announced.rounds == {first: [1]}
        await _until_orchestration_knows(cluster, {client: first for client in spent})

        # Every client may be selected, but two have spent their lifetime budget.
        second = await _submit(cluster, one_release(cluster, clients_per_round=3))
        end = await _until_end(watch, second, limit_s=300)
        assert isinstance(end, JobCompleted), cluster.logs()
        [started] = [e for e in watch.seen if isinstance(e, RoundStarted) and e.job_id == second]
        assert started.selected_clients == sorted(clients - spent)
        await _until_orchestration_knows(cluster, {client: second for client in clients - spent})

        third = await _submit(cluster, one_release(cluster))
        end = await _until_end(watch, third, limit_s=120)

    assert isinstance(end, JobRejected), cluster.logs()
    [reason] = end.reasons
    assert reason.code == "lifetime_budget_exceeded"
    assert "3 of 3 trainer(s)" in reason.message
    assert "0 can afford it, the job needs 1" in reason.message
