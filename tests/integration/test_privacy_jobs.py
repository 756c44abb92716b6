"""DP jobs end to end: the five services, the privacy-accountant and three trainers as processes.

docs/privacy.md as a user sees it: a budget that runs out half-way ends the job
``budget_exhausted`` without overspending (local and central DP), and a job whose noise is
derived from its budget runs all its rounds within it. The expected figures are computed here
with :mod:`fedbus.privacy` from the trainers' sample counts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from fedbus.events import BudgetUpdated, JobCompleted, JobStatus, RoundCompleted
from fedbus.privacy import compute_epsilon
from fedbus.settings import FedbusSettings
from fedbus_executor import PrepareOptions, prepare_dataset

from .harness import EventWatcher, ServiceProcess, free_port, unique
from .test_jobs_end_to_end import (
    KEY_A,
    WATCHED,
    Cluster,
    _http,
    _prepare_groups,
    _registered,
    _spec,
    _starters,
    _submit,
    _until_end,
    _wait_heartbeats,
    _wait_http,
)

pytestmark = pytest.mark.slow

DELTA = 1e-5
BATCH = 32
PLANNED = 4
HEADERS = {"Authorization": f"Bearer {KEY_A}"}


class PrivateCluster(Cluster):
    """The end-to-end cluster plus the privacy-accountant; ``samples`` per trainer."""

    samples: list[int]


def start_private_cluster(
    root: Path, settings: FedbusSettings, *, name: str, extra_env: dict[str, str] | None = None
) -> PrivateCluster:
    """The services, the accountant and three trainers on a fresh digits dataset, ready.

    ``extra_env`` goes to every process (a deployment-wide setting). Stop it with
    ``stop_cluster``.
    """
    data = prepare_dataset("digits", root / "data", PrepareOptions(num_clients=3, seed=0)).root
    cluster = PrivateCluster(
        settings=settings, dataset=unique(name), log_dir=root,
        gateway=f"http://127.0.0.1:{free_port()}", registry=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    cluster.samples = [
        pq.read_metadata(data / "clients" / f"client-{i:03d}.parquet").num_rows for i in range(3)
    ]
    trainers = [f"trainer-{i}" for i in range(3)]
    names = ["model-registry", "orchestration", "aggregator", "gateway", *trainers, "accountant"]
    groups = asyncio.run(_prepare_groups(settings, names))
    _starters(cluster, data, groups, extra_env)
    cluster.starters["accountant"] = lambda: ServiceProcess.start(
        "accountant", "fedbus_accountant", log_dir=root,
        env={**(extra_env or {}), "FEDBUS_CONSUMER_GROUP": groups["accountant"]},
    )  # fmt: skip
    try:
        for service in names:
            cluster.start(service)
        _wait_http(f"{cluster.gateway}/readyz", cluster)
        _wait_http(f"{cluster.registry}/readyz", cluster)
        asyncio.run(_wait_heartbeats(settings, {f"{cluster.dataset}-c{i}" for i in range(3)}))
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: PrivateCluster) -> None:
    for proc in cluster.procs.values():
        proc.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, settings: FedbusSettings
) -> Iterator[PrivateCluster]:
    cluster = start_private_cluster(tmp_path_factory.mktemp("privacy"), settings, name="digits-dp")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def local_epsilon(cluster: PrivateCluster, *, z: float, rounds: int) -> float:
    """The job's epsilon after ``rounds`` local-DP rounds: the largest client's.

    The trainers run DP-SGD with Poisson rate 1 / batches and one step per batch.
    """
    return max(
        compute_epsilon(noise_multiplier=z, sample_rate=1 / math.ceil(n / BATCH),
                        steps=rounds * math.ceil(n / BATCH), delta=DELTA)
        for n in cluster.samples
    )  # fmt: skip


def central_epsilon(*, z: float, rounds: int) -> float:
    """One Gaussian release per round at client sampling rate 1."""
    return compute_epsilon(noise_multiplier=z, sample_rate=1.0, steps=rounds, delta=DELTA)


def dp_spec(cluster: PrivateCluster, **privacy: Any) -> dict[str, Any]:
    return _spec(
        cluster, rounds=privacy.pop("rounds", PLANNED), min_clients=3,
        training={"local_epochs": 1, "batch_size": BATCH, "learning_rate": 0.1},
        privacy={"delta": DELTA, **privacy}, seed=3,
    )  # fmt: skip


async def run_job(cluster: PrivateCluster, spec: dict[str, Any]) -> tuple[str, Any, list[Any]]:
    async with EventWatcher(cluster.settings, [*WATCHED, "budget.updated"]) as watch:
        job_id = await _submit(cluster, spec)
        end = await _until_end(watch, job_id, limit_s=480)
        await asyncio.sleep(1)
        await watch.poll()
    assert isinstance(end, JobCompleted), cluster.logs()
    return job_id, end, [e for e in watch.seen if e.job_id == job_id]


def rounds_of(events: list[Any]) -> list[int]:
    return sorted({e.round for e in events if isinstance(e, RoundCompleted)})


async def shown(cluster: PrivateCluster, job_id: str) -> dict[str, Any]:
    reply = await _http("GET", f"{cluster.gateway}/v1/jobs/{job_id}", headers=HEADERS)
    return dict(reply.json())


async def test_a_local_dp_budget_that_runs_out_half_way_ends_the_job_within_it(
    cluster: PrivateCluster,
) -> None:
    z = 1.2
    two, three = (local_epsilon(cluster, z=z, rounds=k) for k in (2, 3))
    budget = (two + three) / 2  # two rounds fit, a third would not

    job_id, end, events = await run_job(
        cluster, dp_spec(cluster, mode="local_dp", target_epsilon=budget, noise_multiplier=z,
                         clipping_norm=1.0),
    )  # fmt: skip

    assert end.status is JobStatus.BUDGET_EXHAUSTED, cluster.logs()
    assert end.rounds_completed == 2 < PLANNED
    assert rounds_of(events) == [1, 2]
    assert end.guarantee is not None
    assert end.guarantee.epsilon <= budget
    assert end.guarantee.epsilon == pytest.approx(two, rel=1e-3)
    last = [e for e in events if isinstance(e, BudgetUpdated)][-1]
    assert last.exhausted
    view = await shown(cluster, job_id)
    assert view["status"] == "budget_exhausted"
    assert view["privacy"]["epsilon_spent"] == pytest.approx(end.guarantee.epsilon)
    assert set(view["privacy"]["clients"]) == {f"{cluster.dataset}-c{i}" for i in range(3)}
    version = await _registered(cluster, job_id, HEADERS)
    assert version["artifact"]["sha256"] == end.final_model.sha256
    assert version["privacy"] == {
        "mode": "local_dp", "epsilon": end.guarantee.epsilon, "delta": DELTA,
        "accountant": "rdp", "noise_multiplier": z, "clipping_norm": 1.0, "rounds": 2,
    }  # fmt: skip
    print(f"local DP: spent {end.guarantee.epsilon:.4f} of {budget:.4f} in {end.rounds_completed}")


async def test_a_central_dp_budget_that_runs_out_half_way_ends_the_job_within_it(
    cluster: PrivateCluster,
) -> None:
    z = 2.0
    two, three = (central_epsilon(z=z, rounds=k) for k in (2, 3))
    budget = (two + three) / 2

    job_id, end, events = await run_job(
        cluster, dp_spec(cluster, mode="central_dp", target_epsilon=budget, noise_multiplier=z,
                         clipping_norm=0.01),
    )  # fmt: skip

    assert end.status is JobStatus.BUDGET_EXHAUSTED, cluster.logs()
    assert end.rounds_completed < PLANNED
    assert rounds_of(events) == [1, 2]
    released = [e.dp for e in events if isinstance(e, RoundCompleted)]
    assert all(d is not None and (d.noise_multiplier, d.sample_rate, d.steps) == (z, 1.0, 1)
               for d in released)  # fmt: skip
    assert end.guarantee is not None
    assert end.guarantee.epsilon <= budget
    assert end.guarantee.epsilon == pytest.approx(two, rel=1e-3)
    view = await shown(cluster, job_id)
    assert view["privacy"]["mode"] == "central_dp"
    assert view["privacy"]["epsilon_spent"] == pytest.approx(end.guarantee.epsilon)
    version = await _registered(cluster, job_id, HEADERS)
    assert version["privacy"] == {
        "mode": "central_dp", "epsilon": end.guarantee.epsilon, "delta": DELTA,
        "accountant": "rdp", "noise_multiplier": z, "clipping_norm": 0.01, "rounds": 2,
    }  # fmt: skip
    print(f"central DP: spent {end.guarantee.epsilon:.4f} of {budget:.4f}")


async def test_a_local_dp_job_with_noise_from_its_budget_runs_every_round_within_it(
    cluster: PrivateCluster,
) -> None:
    target = 3.0

    job_id, end, _ = await run_job(
        cluster, dp_spec(cluster, mode="local_dp", target_epsilon=target, clipping_norm=1.0,
                         rounds=2),
    )  # fmt: skip

    assert end.status is JobStatus.COMPLETED, cluster.logs()
    assert end.rounds_completed == 2
    assert end.guarantee is not None
    assert end.guarantee.epsilon <= target
    view = await shown(cluster, job_id)
    assert view["status"] == "completed"
    assert view["privacy"]["budget_epsilon"] == target
    assert view["privacy"]["epsilon_spent"] <= target
    print(f"derived local DP: spent {end.guarantee.epsilon:.4f} of {target}")
