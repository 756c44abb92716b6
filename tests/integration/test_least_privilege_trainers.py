"""Least-privilege trainers on the real stack: what a trainer's URLs and environment allow.

A trainer holds no MinIO credentials and no PostgreSQL DSN. Each round the aggregator grants
it two presigned URLs (a GET of the global model, a PUT of its own update key). These tests
use the aggregator's own granting code with MinIO's real signatures and try, as trainer A
would, to reach trainer B's object with A's URLs; then they start a real trainer the way the
demo and the other tests do and read its process environment and env file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    ModelRef,
    PrivacySpec,
    RoundAssigned,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    UpdateSubmitted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore, artifact_cipher, update_key
from fedbus_aggregator.grants import assignments
from fedbus_executor import PrepareOptions, prepare_dataset
from fedbus_trainer import PresignedArtifacts

from .harness import EventWatcher, ServiceProcess, state_dir, trainer_env, unique

SECRET_B = b"trainer B's update: nobody else may read these bytes " * 64


def _started(
    job: str, clients: list[str], model: ModelRef | None, *, deadline_s: float
) -> RoundStarted:
    return RoundStarted.create(
        source="orchestration", job_id=job, round=2, selected_clients=clients, min_clients=1,
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_s), global_model=model,
        model="mlp", dataset="digits", training=TrainingConfig(), strategy=StrategySpec(),
        privacy=PrivacySpec(), seed=3,
    )  # fmt: skip


def _grants(
    settings: FedbusSettings, started: RoundStarted, *, grace_s: float = 60
) -> dict[str, RoundAssigned]:
    """The aggregator's grants for ``started``, signed with the stack's MinIO credentials."""
    presigner = S3ArtifactStore.from_settings(settings)
    out = assignments(started, started.selected_clients, presigner=presigner,
                      now=datetime.now(UTC), grace_s=grace_s)  # fmt: skip
    return {a.client_id: a for a in out}


def _signed_until(url: str) -> datetime:
    """When a SigV4 presigned URL stops working, as its query says."""
    query = parse_qs(urlsplit(url).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))


def _with_key(url: str, key: str) -> str:
    """``url`` with its object key replaced (the signature left as it is)."""
    parts = urlsplit(url)
    bucket = parts.path.lstrip("/").split("/", 1)[0]
    return urlunsplit(parts._replace(path=f"/{bucket}/{key}"))


@pytest.fixture
async def http(settings: FedbusSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=settings.minio_ssl_context(), timeout=30) as client:
        yield client


def _refused(response: httpx.Response, *secrets: bytes) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:300])
    for secret in secrets:
        assert secret[:64] not in response.content  # not one chunk of the object came back


async def test_trainer_a_urls_cannot_read_or_write_trainer_b_objects(
    settings: FedbusSettings, http: httpx.AsyncClient
) -> None:
    store = S3ArtifactStore.from_settings(settings)
    await store.ensure_bucket()
    job, a, b = unique("job-lp"), unique("trn-a"), unique("trn-b")
    model_bytes = b"global model of round 1 " * 64
    model = await store.put_bytes(model_bytes, prefix=f"jobs/{job}/round-1/global")
    grants = _grants(settings, _started(job, [a, b], model, deadline_s=120))
    ga, gb = grants[a], grants[b]
    assert ga.global_model_url is not None
    # B writes its update through its own grant, sealed as a trainer seals it.
    b_store = PresignedArtifacts(
        artifact_cipher(settings), ssl_context=settings.minio_ssl_context()
    )
    try:
        b_ref = await b_store.put_bytes(gb.update_url, SECRET_B, key=gb.update_key)
        assert await store.get_bytes(b_ref) == SECRET_B  # it is there, under B's key
    finally:
        await b_store.aclose()
    b_body = (await http.get(store.presign("get_object", gb.update_key, expires_s=60))).content
    assert b_body.startswith(b"FBE2")  # as stored: the envelope (the operator's own read)
    b_key = update_key(job, 2, b)
    assert gb.update_key == b_key != ga.update_key

    # A's GET URL reads the global model, and only it.
    assert (await http.get(ga.global_model_url)).status_code == 200
    _refused(await http.get(_with_key(ga.global_model_url, b_key)), b_body, SECRET_B)
    # A's PUT URL does not read, not its own key and not B's.
    _refused(await http.get(ga.update_url), b_body, SECRET_B)
    _refused(await http.get(_with_key(ga.update_url, b_key)), b_body, SECRET_B)
    # A's PUT URL rewritten to B's key writes nothing there: B's object is unchanged.
    _refused(await http.put(_with_key(ga.update_url, b_key), content=b"A overwrites B"))
    assert await store.get_bytes(b_ref) == SECRET_B
    # A's PUT URL works for A's key only (what its grant is for).
    assert (await http.put(ga.update_url, content=b"A's own update")).status_code == 200


async def test_an_expired_url_is_refused(settings: FedbusSettings, http: httpx.AsyncClient) -> None:
    store = S3ArtifactStore.from_settings(settings)
    await store.ensure_bucket()
    job, b = unique("job-lp"), unique("trn-b")
    secret = await store.put_bytes(SECRET_B, prefix=f"jobs/{job}/round-1/global")
    # A round whose deadline has passed, with no grace: its URLs live 1 second.
    [grant] = _grants(settings, _started(job, [b], secret, deadline_s=-600), grace_s=0).values()
    assert grant.global_model_url is not None
    assert grant.urls_expire_at <= datetime.now(UTC) + timedelta(seconds=1)

    # Until the signatures' own expiry (X-Amz-Date + X-Amz-Expires, second precision) passed.
    ends = max(_signed_until(grant.global_model_url), _signed_until(grant.update_url))
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds() + 1.1))

    response = await http.get(grant.global_model_url)
    _refused(response, SECRET_B)
    assert "expired" in response.text.lower()
    _refused(await http.put(grant.update_url, content=b"late"))


def _what_it_holds(proc: ServiceProcess) -> tuple[dict[str, str], Path, str, int]:
    """The process's environment (from /proc), its env file, that file's text and mode."""
    environ = Path(f"/proc/{proc.proc.pid}/environ").read_bytes().split(b"\0")
    variables = dict(v.decode().split("=", 1) for v in environ if b"=" in v)
    env_file = Path(variables["FEDBUS_ENV_FILE"])
    return variables, env_file, env_file.read_text(), os.stat(env_file).st_mode & 0o777


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return prepare_dataset("digits", tmp_path / "data", PrepareOptions(num_clients=1, seed=0)).root


async def test_a_trainer_runs_without_any_database_or_storage_secret_and_still_trains(
    settings: FedbusSettings, tmp_path: Path, digits: Path
) -> None:
    await ensure_topics(settings)
    client, dataset, job = unique("trn-env"), unique("digits"), unique("job-lp")
    minio_secret = settings.minio_secret_key.get_secret_value()
    dsn = settings.postgres_dsn.get_secret_value()
    assert minio_secret  # the session itself holds both
    assert dsn
    part = digits / "clients" / "client-000.parquet"
    proc = ServiceProcess.start(
        client, "fedbus_trainer", log_dir=tmp_path, base_env=trainer_env(settings, client),
        args=["--client-id", client, "--data", f"{dataset}={part}", "--device", "cpu"],
        env={"FEDBUS_HEARTBEAT_SECONDS": "1", "FEDBUS_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    try:
        variables, env_file, file_text, mode = _what_it_holds(proc)
        assert env_file == state_dir() / "principals" / f"trainer-{client}.env"
        for name in ("FEDBUS_POSTGRES_DSN", "FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY"):
            assert name not in variables
            assert name not in file_text
        for secret in (minio_secret, dsn, settings.minio_access_key):
            assert all(secret not in value for value in variables.values())
            assert secret not in file_text
        assert mode == 0o600

        # It still trains a round, through the URLs its grant carries.
        started = _started(job, [client], None, deadline_s=300)
        started = started.model_copy(update={"round": 1, "dataset": dataset})
        [grant] = _grants(settings, started).values()
        async with (
            EventWatcher(settings, ["update.submitted"]) as watch,
            EventProducer(settings, client_id="it-least-privilege") as producer,
        ):
            await producer.publish(grant)
            update = await watch.wait_for(
                lambda e: isinstance(e, UpdateSubmitted) and e.job_id == job, limit_s=240
            )
        assert isinstance(update, UpdateSubmitted)
        assert update.update.object_key == grant.update_key
        store = S3ArtifactStore.from_settings(settings)
        assert len(await store.get_bytes(update.update)) == update.update.size_bytes
        assert proc.alive(), proc.text()[-2000:]
    finally:
        proc.stop()
    assert "Traceback" not in proc.text(), proc.text()[-3000:]
    assert "X-Amz-Signature" not in proc.text()  # its URLs are credentials: never logged
