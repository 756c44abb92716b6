"""Kafka and MinIO speak only TLS, with certificates of the stack's own CA, and a job runs on it.

What a user (or an attacker on the host's network) would check on a stack started by
``make up`` (TLS and SASL are its defaults): the settings in use are SASL_SSL and https;
a client speaking PLAINTEXT or SASL_PLAINTEXT to the Kafka port gets no answer from Kafka; a
TLS client that does not trust the local CA is refused by both servers; plain http to MinIO
serves no object. Then one federated job runs to the end over SASL and TLS: every service and
trainer reaches Kafka and MinIO only through these listeners, so a finished job shows they all
spoke TLS.

Skipped only on a stack without TLS or SASL (``FEDBUS_TLS=off``, ``FEDBUS_KAFKA_AUTH=none``,
or a state directory formatted before these settings).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import uuid
from urllib.parse import urlparse

import boto3
import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from botocore.config import Config
from botocore.exceptions import SSLError as BotoSSLError

from fedbus.events import JobCompleted
from fedbus.settings import FedbusSettings, KafkaSecurityProtocol
from fedbus.storage import S3ArtifactStore

from .harness import EventWatcher, state_dir
from .test_jobs_end_to_end import (
    KEY_A,
    WATCHED,
    Cluster,
    _http,
    _registered,
    _spec,
    _submit,
    _until_end,
    cluster,
)

__all__ = ["cluster"]  # the end-to-end module's fixture: one cluster for this module

KAFKA_LIMIT_S = 60


@pytest.fixture(scope="module")
def tls_stack(settings: FedbusSettings) -> FedbusSettings:
    """The stack's settings when it was started with TLS and SASL; skips the module otherwise."""
    mode_file = state_dir() / "tls-mode"
    if not mode_file.exists() or mode_file.read_text().strip() != "on":
        pytest.skip("the stack runs without TLS (FEDBUS_TLS=off, or a state dir from before TLS)")
    if settings.kafka_sasl_mechanism is None:
        pytest.skip("the stack runs Kafka without SASL (FEDBUS_KAFKA_AUTH=none)")
    return settings


def _kafka_address(settings: FedbusSettings) -> tuple[str, int]:
    host, port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    return host, int(port)


def _minio_address(settings: FedbusSettings) -> tuple[str, int]:
    url = urlparse(settings.minio_endpoint)
    return url.hostname or "127.0.0.1", url.port or 443


def _tls_version(address: tuple[str, int], context: ssl.SSLContext) -> str | None:
    """The protocol a TLS handshake with ``address`` agrees on (raises what the client does)."""
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=address[0]) as conn,
    ):
        return conn.version()


def _plaintext_api_versions(address: tuple[str, int]) -> bytes:
    """Send Kafka's ApiVersions request in the clear; return whatever comes back."""
    header = struct.pack(">hhi", 18, 0, 7) + struct.pack(">h", 6) + b"attack"
    got = b""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(struct.pack(">i", len(header)) + header)
        try:
            while chunk := conn.recv(4096):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return got


async def _bootstrap(settings: FedbusSettings, **options: object) -> set[str]:
    """Topics a consumer with ``options`` sees after connecting (raises when it cannot)."""
    opts = {**settings.kafka_client_options(), **options}
    consumer = AIOKafkaConsumer(**opts, request_timeout_ms=5000, retry_backoff_ms=200)
    async with asyncio.timeout(KAFKA_LIMIT_S):
        await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def test_the_settings_in_use_are_sasl_ssl_and_https_with_the_local_ca(
    tls_stack: FedbusSettings,
) -> None:
    ca = state_dir() / "tls" / "ca.crt"

    assert tls_stack.kafka_security_protocol is KafkaSecurityProtocol.SASL_SSL
    assert tls_stack.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert tls_stack.kafka_ssl_cafile == ca
    assert tls_stack.minio_endpoint.startswith("https://")
    assert tls_stack.minio_ca_file == ca
    trusted = ssl.create_default_context(cafile=str(ca))
    assert _tls_version(_kafka_address(tls_stack), trusted) == "TLSv1.3"
    assert _tls_version(_minio_address(tls_stack), trusted) == "TLSv1.3"


async def test_the_tls_client_of_the_settings_reads_kafka_metadata(
    tls_stack: FedbusSettings,
) -> None:
    assert "job.requested" in await _bootstrap(tls_stack)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
async def test_a_plaintext_kafka_client_gets_nothing(
    tls_stack: FedbusSettings, protocol: str
) -> None:
    # The admin's own credentials: what is refused is the protocol, not the principal.
    with pytest.raises(KafkaConnectionError):
        await _bootstrap(tls_stack, security_protocol=protocol, ssl_context=None)

    answer = await asyncio.to_thread(_plaintext_api_versions, _kafka_address(tls_stack))
    # No Kafka response (length, then our correlation id 7); at most a TLS alert record.
    assert answer[4:8] != struct.pack(">i", 7)
    assert answer == b"" or answer[0] == 0x15


async def test_a_tls_client_that_does_not_trust_the_local_ca_is_refused_by_kafka(
    tls_stack: FedbusSettings,
) -> None:
    system_cas = ssl.create_default_context()

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncio.to_thread(_tls_version, _kafka_address(tls_stack), system_cas)
    with pytest.raises(KafkaConnectionError):
        await _bootstrap(tls_stack, ssl_context=ssl.create_default_context())


def test_a_tls_client_that_does_not_trust_the_local_ca_is_refused_by_minio(
    tls_stack: FedbusSettings,
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=tls_stack.minio_endpoint,
        aws_access_key_id=tls_stack.minio_access_key,
        aws_secret_access_key=tls_stack.minio_secret_key.get_secret_value(),
        region_name=tls_stack.minio_region,
        verify=True,  # the system's CAs, not the stack's
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _tls_version(_minio_address(tls_stack), ssl.create_default_context())
    with pytest.raises(BotoSSLError, match="CERTIFICATE_VERIFY_FAILED"):
        s3.list_objects_v2(Bucket=tls_stack.minio_bucket, MaxKeys=1)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_stack.minio_endpoint}/minio/health/live", timeout=10)


async def test_plain_http_to_minio_gets_no_object(tls_stack: FedbusSettings) -> None:
    store = S3ArtifactStore.from_settings(tls_stack)
    marker = uuid.uuid4().bytes * 64
    tensors = {"w": np.frombuffer(marker, dtype=np.uint8).astype(np.float32)}
    ref = await store.put_tensors(tensors, prefix=f"tls-test/{uuid.uuid4().hex[:8]}")
    url = store.presigned_url(ref, expires_s=60)
    stored = await asyncio.to_thread(
        lambda: httpx.get(url, timeout=10, verify=tls_stack.minio_ssl_context()).content
    )

    plain = await asyncio.to_thread(httpx.get, url.replace("https://", "http://", 1), timeout=10)

    assert stored.startswith(b"FBE2")  # the object as stored (encrypted at rest)
    assert plain.status_code == 400
    assert stored not in plain.content
    assert b"HTTPS" in plain.content  # "Client sent an HTTP request to an HTTPS server."


async def test_a_federated_job_runs_end_to_end_over_sasl_and_tls(
    tls_stack: FedbusSettings, cluster: Cluster
) -> None:
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        job_id = await _submit(cluster, _spec(cluster, rounds=2))
        end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()
    assert end.rounds_completed == 2
    assert end.final_model is not None
    version = await _registered(cluster, job_id, {"Authorization": f"Bearer {KEY_A}"})
    assert version["download_url"].startswith("https://")
    body = (await _http("GET", version["download_url"], tls=tls_stack)).content
    assert body.startswith(b"FBE2")
    assert version["artifact"]["sha256"] == end.final_model.sha256
