"""Fixtures for integration tests: the real local stack started by `make up`.

Every test here is marked ``integration``. They talk to a real Kafka broker, a real MinIO and a
real PostgreSQL; when one is not answering the test fails with the command that starts it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from fedbus.bus import ensure_topics
from fedbus.settings import FedbusSettings, load_settings
from fedbus.storage import artifact_cipher
from tests.integration.gateway_process import Gateway, running_gateway
from tests.integration.harness import env_file as stack_env_file

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def settings() -> FedbusSettings:
    """Settings from the `.env` that `make up` wrote; fails clearly when the stack is down.

    ``FEDBUS_ENV_FILE`` names another stack's env file (services started by the tests read
    the same variable).
    """
    env_file = stack_env_file()
    if not env_file.exists():
        pytest.fail(f"{env_file} missing: start the local stack with `make up`")
    cfg: FedbusSettings = load_settings()
    if artifact_cipher(cfg) is None:
        cfg = _with_stack_artifact_key(cfg)
    kafka_host, kafka_port = cfg.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    minio = urlparse(cfg.minio_endpoint)
    pg = urlparse(cfg.postgres_dsn.get_secret_value())
    for name, host, port in [
        ("kafka", kafka_host, int(kafka_port)),
        ("minio", minio.hostname or "127.0.0.1", minio.port or 80),
        ("postgres", pg.hostname or "127.0.0.1", pg.port or 5432),
    ]:
        if not _answers(host, port):
            pytest.fail(f"{name} is not answering on {host}:{port}: run `make up`")
    asyncio.run(ensure_topics(cfg))  # what each service does at start; tests may come first
    return cfg


def _with_stack_artifact_key(cfg: FedbusSettings) -> FedbusSettings:
    """Encrypt artifacts in the tests of a stack started before `make up` wrote a key.

    The key is derived from the stack's MinIO secret, so every test session on this stack, and
    every process it starts (they inherit ``os.environ``), holds the same one and can read what
    the others wrote, as with the key file `make up` now writes into .env.
    """
    secret = cfg.minio_secret_key.get_secret_value().encode()
    key = hashlib.sha256(b"fedbus integration-test artifact key\0" + secret).digest()
    os.environ["FEDBUS_ARTIFACT_KEYS"] = f"stack-test:{base64.b64encode(key).decode()}"
    os.environ.pop("FEDBUS_ARTIFACT_KEY_ID", None)
    return load_settings()


@pytest.fixture
async def gateway(settings: FedbusSettings, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway process with keys for tenants ``a`` and ``b`` (all scopes)."""
    async with running_gateway(settings, tmp_path) as running:
        yield running
