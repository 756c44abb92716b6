"""``fedbus jobs ...`` against a fake gateway (an httpx MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedbus_cli import main
from fedbus_cli.commands import _gateway
from fedbus_cli.commands._gateway import GatewayClient

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "federated-digits.yaml"
JOB = "0b6f2c1e-1111-4222-8333-444455556666"


def sse(*frames: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in frames)


@dataclass
class FakeGateway:
    """Answers like the gateway; records requests."""

    stream: str = ""
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != "Bearer k-123":
            return httpx.Response(401, json={"detail": "unknown API key"})
        path = request.url.path
        if request.method == "POST" and path == "/v1/jobs":
            return httpx.Response(202, json={"job_id": JOB, "status": "requested", "links": {}})
        if path == "/v1/jobs":
            return httpx.Response(200, json={"jobs": [VIEW]})
        if path == f"/v1/jobs/{JOB}/events":
            return httpx.Response(
                200, text=self.stream, headers={"content-type": "text/event-stream"}
            )
        if path == f"/v1/jobs/{JOB}/cancel":
            return httpx.Response(202, json={"job_id": JOB, "status": "running", "links": {}})
        if path == f"/v1/jobs/{JOB}":
            return httpx.Response(200, json=VIEW)
        return httpx.Response(404, json={"detail": f"no job '{path.rsplit('/', 1)[-1]}'"})


VIEW: dict[str, Any] = {
    "job_id": JOB, "tenant": "acme", "status": "requested", "current_round": None,
    "rounds_completed": 0, "metrics": {}, "participants": [], "reasons": [],
    "spec": {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 3},
    "created_at": "2025-03-14T09:30:00Z", "updated_at": "2025-03-14T09:30:00Z",
}  # fmt: skip


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()
    monkeypatch.setattr(_gateway, "TRANSPORT", httpx.MockTransport(fake.handle))
    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test:8080")
    monkeypatch.setenv("FEDBUS_API_KEY", "k-123")
    return fake


def test_submit_sends_the_yaml_spec_and_prints_the_job_id(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "submit", str(EXAMPLE), "--idempotency-key", "nightly"])

    assert code == 0
    assert capsys.readouterr().out.strip() == JOB
    [request] = gateway.requests
    assert str(request.url) == "http://gw.test:8080/v1/jobs"
    body = json.loads(request.content)
    assert body["idempotency_key"] == "nightly"
    assert {k: body["spec"][k] for k in ("mode", "model", "dataset", "rounds")} == {
        "mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 3,
    }  # fmt: skip
    assert (body["spec"]["clients_per_round"], body["spec"]["min_clients"]) == (3, 2)


def test_a_bad_spec_is_refused_before_any_request(
    gateway: FakeGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("mode: federated\nmodel: mlp\ndataset: digits\nrounds: many\n")

    code = main(["jobs", "submit", str(spec)])

    err = capsys.readouterr().err
    assert code == 2
    assert "bad.yaml" in err
    assert "rounds" in err
    assert gateway.requests == []


def test_flags_override_the_settings(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "list", "--gateway", "http://other:1", "--api-key", "wrong"])

    assert code == 2
    assert "HTTP 401: unknown API key" in capsys.readouterr().err
    assert str(gateway.requests[0].url).startswith("http://other:1/v1/jobs")


def test_list_prints_one_row_per_job_and_passes_the_status_filter(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "list", "--status", "running"])

    rows = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(rows) == 2
    assert rows[1].split()[:4] == [JOB, "requested", "0/3", "mlp/digits"]
    assert gateway.requests[0].url.params["status"] == "running"


def test_show_of_an_unknown_job_says_so(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "show", "nope"])

    assert code == 2
    assert "HTTP 404: no job 'nope'" in capsys.readouterr().err


def test_cancel_posts_the_reason(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["jobs", "cancel", JOB, "--reason", "wrong data"])

    assert code == 0
    assert json.loads(gateway.requests[0].content) == {"reason": "wrong data"}
    assert "cancellation" in capsys.readouterr().out


def _round(r: int, acc: float) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("round.started", {"round": r, "selected_clients": ["a", "b", "c"]}),
        ("progress", {"round": r, "client_id": "a", "phase": "uploading"}),
        ("round.completed", {"round": r, "participants": ["a", "b"], "metrics": {"accuracy": acc}}),
    ]  # fmt: skip


def test_watch_follows_to_completion_and_exits_0(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.stream = sse(
        ("status", VIEW), ("job.accepted", {"spec": VIEW["spec"]}),
        *_round(1, 0.7), *_round(2, 0.8), *_round(3, 0.9),
        ("job.completed", {"status": "completed", "rounds_completed": 3,
                           "metrics": {"accuracy": 0.9, "loss": 0.3}}),
    )  # fmt: skip

    code = main(["jobs", "watch", JOB])

    captured = capsys.readouterr()
    assert code == 0
    assert f"job {JOB}: completed, rounds 3/3, accuracy=0.9000, loss=0.3000" in captured.out
    assert "rounds: 100%" in captured.err  # the tqdm bar reached 3/3


def test_watch_of_a_failed_job_exits_1_with_the_reason(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.stream = sse(
        ("status", {**VIEW, "status": "running", "current_round": 1}), *_round(1, 0.5),
        ("job.failed", {"code": "too_few_clients", "message": "round 2: 1 of min 2 reported"}),
    )  # fmt: skip

    code = main(["jobs", "watch", JOB])

    out = capsys.readouterr().out
    assert code == 1
    assert f"job {JOB}: failed, rounds 1/3" in out
    assert "too_few_clients: round 2: 1 of min 2 reported" in out


def test_event_stream_joins_data_lines_and_skips_comments_and_pings() -> None:
    # As sse-starlette sends it: ids on events, a keep-alive comment between them.
    body = (
        ': ping\r\n\r\nevent: progress\r\nid: e1\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        ": ping - 2025-03-14 09:30:00\r\n\r\ndata: x\r\n\r\n"
    )
    stream = httpx.MockTransport(
        lambda _: httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
    )
    client = GatewayClient("http://gw.test", "k", transport=stream)

    frames = [(frame.event, frame.data) for frame in client.events(JOB)]

    assert frames == [("progress", '{"a":\n1}'), ("message", "x")]


def test_a_stream_that_is_not_an_event_stream_is_a_gateway_error() -> None:
    html = httpx.MockTransport(lambda _: httpx.Response(200, text="<html>proxy login</html>"))
    client = GatewayClient("http://gw.test", "k", transport=html)

    with pytest.raises(_gateway.GatewayError, match="event stream"):
        list(client.events(JOB))


class BrokenOff(httpx.SyncByteStream):
    """A response body that breaks off after ``text``, as a reset connection does."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __iter__(self) -> Iterator[bytes]:
        yield self.text.encode()
        raise httpx.ReadError("connection reset by peer")


def numbered(frames: list[tuple[str, dict[str, Any]]], first: int) -> str:
    return "".join(
        f"event: {name}\nid: {first + i}\ndata: {json.dumps(data)}\n\n"
        for i, (name, data) in enumerate(frames)
    )


@dataclass
class ResumingGateway:
    """The job's stream in parts: each connection gets the next part, then breaks off or ends.

    Records the ``Last-Event-ID`` of each connection.
    """

    parts: list[httpx.Response]
    last_ids: list[str | None] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.last_ids.append(request.headers.get("last-event-id"))
        if not self.parts:
            raise httpx.ConnectError("connection refused", request=request)
        return self.parts.pop(0)


def _stream_part(text: str, *, breaks: bool) -> httpx.Response:
    headers = {"content-type": "text/event-stream"}
    if breaks:
        return httpx.Response(200, stream=BrokenOff(text), headers=headers)
    return httpx.Response(200, text=text, headers=headers)


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every event the watch shows, and no waiting between reconnections."""
    from fedbus_cli.commands import jobs, jobwatch

    applied: list[tuple[str, dict[str, Any]]] = []
    original = jobwatch.JobWatch.apply

    def spy(self: jobwatch.JobWatch, event: str, data: dict[str, Any]) -> None:
        applied.append((event, data))
        original(self, event, data)

    monkeypatch.setattr(jobwatch.JobWatch, "apply", spy)
    monkeypatch.setattr(jobs, "_sleep", lambda _s: None)
    return applied


def _resuming(monkeypatch: pytest.MonkeyPatch, parts: list[httpx.Response]) -> ResumingGateway:
    fake = ResumingGateway(parts)
    monkeypatch.setattr(_gateway, "TRANSPORT", httpx.MockTransport(fake.handle))
    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test:8080")
    monkeypatch.setenv("FEDBUS_API_KEY", "k-123")
    return fake


def test_watch_resumes_a_broken_stream_with_last_event_id_and_shows_no_event_twice(
    monkeypatch: pytest.MonkeyPatch,
    shown: list[tuple[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = [
        ("job.accepted", {"spec": VIEW["spec"]}), *_round(1, 0.7), *_round(2, 0.8),
        *_round(3, 0.9),
        ("job.completed", {"status": "completed", "rounds_completed": 3,
                           "metrics": {"accuracy": 0.9}}),
    ]  # fmt: skip
    status = sse(("status", VIEW))
    fake = _resuming(monkeypatch, [
        _stream_part(status + numbered(events[:4], 1), breaks=True),
        # Ended early (a dropped slow reader); it repeats event 4, which must not show again.
        _stream_part(status + numbered(events[3:7], 4), breaks=False),
        _stream_part(status + numbered(events[7:], 8), breaks=False),
    ])  # fmt: skip

    code = main(["jobs", "watch", JOB])

    out = capsys.readouterr().out
    assert code == 0
    assert fake.last_ids == [None, "4", "7"]
    assert shown == [("status", VIEW), *events]
    assert f"job {JOB}: completed, rounds 3/3, accuracy=0.9000" in out


def test_watch_gives_up_after_bounded_reconnections_with_backoff(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedbus_cli.commands import jobs

    waits: list[float] = []
    monkeypatch.setattr(jobs, "_sleep", waits.append)
    first = sse(("status", {**VIEW, "status": "running"})) + numbered([_round(1, 0.5)[0]], 1)
    fake = _resuming(monkeypatch, [_stream_part(first, breaks=True)])  # then: refused

    code = main(["jobs", "watch", JOB])

    assert code == 2
    assert "lost the event stream" in capsys.readouterr().err
    assert fake.last_ids == [None] + ["1"] * jobs.RECONNECTS
    assert waits == sorted(waits)
    assert len(waits) == jobs.RECONNECTS
    assert waits[-1] <= 10
