"""A site policy declines a job that asks for too large an epsilon: a real trainer process.

The trainer runs with a policy file (``max_epsilon: 1``) next to orchestration, the aggregator
and a gateway, all real processes on the real stack. A tenant submits a local-DP job with
``target_epsilon: 8`` that only this site could train. What the data owner and the user see:
the trainer publishes ``round.declined`` naming ``epsilon_too_large`` with both figures, never
downloads, trains or uploads, and the job fails at once (no deadline wait) with code
``clients_declined`` and the decline's reason, in the gateway's view and event stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fedbus.events import (
    Event,
    JobCompleted,
    JobFailed,
    Progress,
    RoundDeclined,
    TrainerHeartbeat,
    UpdateSubmitted,
)
from fedbus.settings import FedbusSettings
from fedbus_executor import PrepareOptions, prepare_dataset

from .gateway_process import Gateway, running_gateway
from .harness import EventWatcher, ServiceProcess, start_coordination, trainer_env, unique

pytestmark = pytest.mark.slow

MAX_EPSILON = 1.0
ASKED = 8.0
WATCHED = ["round.declined", "update.submitted", "progress", "job.failed", "job.completed"]


@dataclass
class Site:
    """The processes, the site's client id and dataset, and its state directory."""

    gateway: Gateway
    client: str
    dataset: str
    state: Path
    procs: list[ServiceProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in self.procs)


def _trainer(
    settings: FedbusSettings, tmp_path: Path, client: str, dataset: str, data: Path, policy: Path
) -> ServiceProcess:
    """A trainer of ``client`` as a data owner runs it (its own env file), with ``policy``."""
    return ServiceProcess.start(
        client, "fedbus_trainer", log_dir=tmp_path,
        args=["--client-id", client, "--data", f"{dataset}={data}", "--device", "cpu"],
        base_env=trainer_env(settings, client),
        env={"FEDBUS_HEARTBEAT_SECONDS": "1", "FEDBUS_STATE_DIR": str(tmp_path / "state"),
             "OMP_NUM_THREADS": "1", "FEDBUS_SITE_POLICY_FILE": str(policy)},
    )  # fmt: skip


@pytest.fixture
async def site(settings: FedbusSettings, tmp_path: Path) -> AsyncIterator[Site]:
    data = prepare_dataset("digits", tmp_path / "data", PrepareOptions(num_clients=1, seed=0)).root
    dataset, client = unique("digits-site"), unique("site")
    policy = tmp_path / "site-policy.yaml"
    policy.write_text(f"max_epsilon: {MAX_EPSILON}\nallowed_models: [mlp]\n")
    procs = [
        *await start_coordination(settings, tmp_path, "site",
                                  f"{dataset}={data / 'test.parquet'}"),
        _trainer(settings, tmp_path, client, dataset, data / "clients" / "client-000.parquet",
                 policy),
    ]  # fmt: skip
    try:
        async with running_gateway(settings, tmp_path) as gateway:
            running = Site(gateway, client, dataset, tmp_path / "state", procs)
            await _wait_heartbeat(settings, client, running)
            yield running
    finally:
        for proc in procs:
            proc.stop()


async def _wait_heartbeat(settings: FedbusSettings, client: str, site: Site) -> None:
    async with EventWatcher(settings, ["trainer.heartbeat"]) as watch:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if any(isinstance(e, TrainerHeartbeat) and e.client_id == client for e in watch.seen):
                return
            if dead := [p.name for p in site.procs if not p.alive()]:
                pytest.fail(f"{dead} exited during start:\n{site.logs()}")
            await watch.poll()
    pytest.fail(f"no heartbeat from {client}:\n{site.logs()}")


def _spec(site: Site) -> dict[str, object]:
    return {
        "mode": "federated", "model": "mlp", "dataset": site.dataset, "rounds": 2,
        "clients_per_round": 1, "min_clients": 1, "round_deadline_seconds": 300,
        "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
        "privacy": {"mode": "local_dp", "target_epsilon": ASKED, "delta": 1e-5,
                    "clipping_norm": 1.0},
        "seed": 3,
    }  # fmt: skip


async def test_a_site_policy_declines_a_job_that_asks_for_too_large_an_epsilon(
    settings: FedbusSettings, site: Site
) -> None:
    gw = site.gateway
    async with EventWatcher(settings, WATCHED) as watch, httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(
            f"{gw.url}/v1/jobs", json={"spec": _spec(site)}, headers=gw.auth("a")
        )
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        started = time.monotonic()
        end = await watch.wait_for(
            lambda e: e.job_id == job_id and isinstance(e, JobFailed | JobCompleted), limit_s=240
        )
        waited = time.monotonic() - started
        await asyncio.sleep(1)  # anything the trainer might still send
        await watch.poll()
        view = (await http.get(f"{gw.url}/v1/jobs/{job_id}", headers=gw.auth("a"))).json()
        stream = await http.get(
            f"{gw.url}/v1/jobs/{job_id}/events", headers=gw.auth("a") | {"Last-Event-ID": "0"}
        )
    ours: list[Event] = [e for e in watch.seen if e.job_id == job_id]

    # The trainer declined, naming the rule and both figures.
    # One answer per round attempt (a grant repeated for it is answered with the same event).
    declines = {e.event_id: e for e in ours if isinstance(e, RoundDeclined)}
    assert len(declines) == 1, site.logs()
    (declined,) = declines.values()
    assert (declined.client_id, declined.round, declined.retry_after_s) == (site.client, 1, None)
    assert [r.code for r in declined.reasons] == ["epsilon_too_large"]
    assert f"epsilon {ASKED:g}" in declined.reasons[0].message
    assert f"at most {MAX_EPSILON:g} (max_epsilon)" in declined.reasons[0].message
    # ... and did nothing else for the round: no download, no training, no update.
    assert not [e for e in ours if isinstance(e, UpdateSubmitted)]
    assert not [e for e in ours if isinstance(e, Progress) and e.client_id == site.client], [
        (e.phase, e.message) for e in ours if isinstance(e, Progress)
    ]
    # The job fails at once (the round's deadline is 300 s) with the decline as its reason.
    assert isinstance(end, JobFailed), site.logs()
    assert end.code == "clients_declined"
    assert f"{site.client} declined round 1: epsilon_too_large" in end.message
    assert waited < 120
    # What the user sees: the job failed with that reason, and the decline in its stream.
    assert view["status"] == "failed"
    assert [r["code"] for r in view["reasons"]] == ["clients_declined"]
    assert "epsilon_too_large" in view["reasons"][0]["message"]
    frames = [line[len("event: ") :] for line in stream.text.splitlines()
              if line.startswith("event: ")]  # fmt: skip
    assert "round.declined" in frames
    assert frames[-1] == "job.failed"
    # A declined round is not counted as trained by the site.
    log = site.state / f"trainer-{site.client}" / "site-rounds.json"
    assert not log.exists() or job_id not in log.read_text()
    assert all(p.alive() for p in site.procs), site.logs()


async def test_a_bad_policy_file_stops_the_trainer_naming_the_file(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    data = prepare_dataset("digits", tmp_path / "data", PrepareOptions(num_clients=1, seed=0)).root
    policy = tmp_path / "site-policy.yaml"
    policy.write_text(json.dumps({"max_epsilon": 1, "max_epsilom": 2}))
    proc = _trainer(
        settings, tmp_path, unique("site"), "digits", data / "clients" / "client-000.parquet",
        policy,
    )  # fmt: skip
    try:
        code = await asyncio.to_thread(proc.proc.wait, 120)
    finally:
        proc.stop()

    assert code == 2, proc.text()
    assert str(policy) in proc.text()
    assert "max_epsilom" in proc.text()
