"""The trainer's storage: presigned URLs only, bodies sealed with the keyring, checked on read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fedbus.bus import InMemoryBus
from fedbus.errors import NonRetryableError
from fedbus.events import ModelRef, Phase, Progress, RoundAssigned, UpdateSubmitted
from fedbus.storage import (
    AesGcmCipher,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    DecryptionError,
    InMemoryArtifactStore,
    StorageUnavailableError,
    seal,
    sha256_hex,
)
from fedbus_executor import initial_weights
from fedbus_trainer import (
    Deps,
    GrantRefusedError,
    PresignedArtifacts,
    SubmittedLog,
    load_local_datasets,
    on_round_assigned,
)

from .fakes import FakeGrants, put_url

CIPHER = AesGcmCipher(b"k" * 32, key_id="site")
KEY = "jobs/j/round-2/updates/c1/update"
URL = "https://minio.test/fedbus/" + KEY + "?X-Amz-Signature=abc"


def transport(
    status: int, body: bytes = b"", seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body)

    return httpx.MockTransport(answer)


def ref_of(data: bytes, key: str = KEY) -> ModelRef:
    return ModelRef(object_key=key, size_bytes=len(data), sha256=sha256_hex(data))


async def test_a_download_is_decrypted_for_its_key_and_checked() -> None:
    data = b"weights" * 100
    store = PresignedArtifacts(CIPHER, transport=transport(200, seal(CIPHER, data, key=KEY)))

    assert await store.get_bytes(URL, ref_of(data)) == data


async def test_a_body_sealed_for_another_key_or_other_bytes_is_refused() -> None:
    data = b"weights"
    moved = PresignedArtifacts(CIPHER, transport=transport(200, seal(CIPHER, data, key="x")))
    changed = PresignedArtifacts(CIPHER, transport=transport(200, seal(CIPHER, b"other", key=KEY)))

    with pytest.raises(DecryptionError):
        await moved.get_bytes(URL, ref_of(data))
    with pytest.raises(ArtifactIntegrityError):
        await changed.get_bytes(URL, ref_of(data))


async def test_an_upload_is_sealed_for_the_granted_key_and_names_the_plaintext() -> None:
    seen: list[httpx.Request] = []
    store = PresignedArtifacts(CIPHER, transport=transport(200, seen=seen))
    data = b"delta" * 50

    ref = await store.put_bytes(URL, data, key=KEY)

    [request] = seen
    assert (request.method, str(request.url)) == ("PUT", URL)
    assert data not in request.content  # ciphertext only
    assert CIPHER.decrypt(request.content, associated=KEY.encode()) == data
    assert ref == ref_of(data)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, GrantRefusedError), (400, GrantRefusedError), (404, ArtifactNotFoundError),
     (500, StorageUnavailableError), (503, StorageUnavailableError)],
)  # fmt: skip
async def test_what_the_server_answers_decides_retry_or_not(
    status: int, error: type[Exception]
) -> None:
    body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    store = PresignedArtifacts(CIPHER, transport=transport(status, body))

    with pytest.raises(error) as raised:
        await store.get_bytes(URL, ref_of(b"x"))
    with pytest.raises(error):
        await store.put_bytes(URL, b"x", key=KEY)
    assert "Signature" not in str(raised.value)  # the URL is a credential: never in messages
    assert issubclass(error, NonRetryableError) != (error is StorageUnavailableError)


async def test_no_url_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    data = b"weights"
    store = PresignedArtifacts(CIPHER, transport=transport(200, seal(CIPHER, data, key=KEY)))

    with caplog.at_level(logging.DEBUG):
        await store.get_bytes(URL, ref_of(data))
        await store.put_bytes(URL, data, key=KEY)

    assert "X-Amz-Signature" not in caplog.text


async def test_production_refuses_a_plain_http_url() -> None:
    seen: list[httpx.Request] = []
    store = PresignedArtifacts(CIPHER, require_https=True, transport=transport(200, seen=seen))

    with pytest.raises(GrantRefusedError, match="not https"):
        await store.put_bytes("http://minio.test/fedbus/" + KEY, b"x", key=KEY)
    assert seen == []


async def test_a_connection_failure_is_worth_retrying() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    store = PresignedArtifacts(CIPHER, transport=httpx.MockTransport(fail))

    with pytest.raises(StorageUnavailableError):
        await store.get_bytes(URL, ref_of(b"x"))


@pytest.fixture
def deps(client_file: Path) -> Deps:
    return Deps(
        client_id="c1",
        datasets=load_local_datasets({"digits": client_file}),
        artifacts=FakeGrants(InMemoryArtifactStore(CIPHER)),
        publisher=InMemoryBus(),
        submitted=SubmittedLog(),
        device="cpu",
        progress_interval_s=0.0,
    )


def _grants(deps: Deps) -> FakeGrants:
    assert isinstance(deps.artifacts, FakeGrants)
    return deps.artifacts


async def test_the_update_goes_to_the_granted_key_sealed_and_the_model_comes_from_its_url(
    deps: Deps, round_assigned: Callable[..., RoundAssigned]
) -> None:
    grants = _grants(deps)
    model = await grants.store.put_tensors(
        initial_weights("mlp", 3, deps.datasets["digits"].spec), prefix="jobs/job-1/round-1/global"
    )
    event = round_assigned(round=2, global_model=model)

    out = await on_round_assigned(event, deps=deps)

    [update] = [e for e in out if isinstance(e, UpdateSubmitted)]
    assert grants.requests == [("GET", model.object_key), ("PUT", event.update_key)]
    assert update.update.object_key == event.update_key == "jobs/job-1/round-2/updates/c1/update"
    stored = grants.store.objects[event.update_key]
    assert stored.startswith(b"FBE2")  # ciphertext at rest, under the site's keyring
    assert len(await grants.store.get_bytes(update.update)) == update.update.size_bytes


async def test_the_same_round_started_assigned_again_with_new_urls_is_answered_not_trained(
    deps: Deps, round_assigned: Callable[..., RoundAssigned]
) -> None:
    first = round_assigned()
    regrant = round_assigned(
        started_event_id=first.started_event_id,
        update_url=put_url(first.update_key) + "?again",  # new URLs: this one no longer works
    )

    done = [e for e in await on_round_assigned(first, deps=deps) if isinstance(e, UpdateSubmitted)]
    again = await on_round_assigned(regrant, deps=deps)

    assert again == done
    assert [r for r in _grants(deps).requests if r[0] == "PUT"] == [("PUT", first.update_key)]


async def test_a_refused_grant_fails_the_round_softly_and_records_nothing(
    deps: Deps, round_assigned: Callable[..., RoundAssigned]
) -> None:
    event = round_assigned(update_url="memory://put/jobs/job-1/round-1/updates/c2/update")

    out = await on_round_assigned(event, deps=deps)

    assert [type(e) for e in out] == [Progress]
    assert isinstance(out[0], Progress)
    assert out[0].phase is Phase.FAILED
    assert "GrantRefusedError" in out[0].message
    assert deps.submitted.get("job-1", 1, event.started_event_id) is None


async def test_a_global_model_without_a_url_is_not_trained(
    deps: Deps, round_assigned: Callable[..., RoundAssigned]
) -> None:
    model = ModelRef(object_key="jobs/job-1/round-1/global/x", size_bytes=1, sha256="0" * 64)

    out = await on_round_assigned(
        round_assigned(round=2, global_model=model, global_model_url=None), deps=deps
    )

    assert [e.phase for e in out if isinstance(e, Progress)] == [Phase.FAILED]
    assert _grants(deps).requests == []


async def test_no_url_reaches_the_trainers_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """As the trainer logs (JSON lines at INFO): httpx would log each request's signed URL."""
    from fedbus.telemetry import configure_logging

    data = b"weights"
    store = PresignedArtifacts(CIPHER, transport=transport(200, seal(CIPHER, data, key=KEY)))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("trainer", "INFO")
    try:
        await store.get_bytes(URL, ref_of(data))
        await store.put_bytes(URL, data, key=KEY)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)

    assert "X-Amz-" not in capsys.readouterr().err
