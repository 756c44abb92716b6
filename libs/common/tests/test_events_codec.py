"""encode/decode: both encodings, and a typed error that says what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedbus.errors import NonRetryableError
from fedbus.events import (
    AVRO_MAGIC,
    MAX_EVENT_BYTES,
    DecodeFailure,
    EventDecodeError,
    EventEncodeError,
    JobRequested,
    JobSpec,
    Progress,
    TrainerHeartbeat,
    child_traceparent,
    decode,
    encode,
)


def _job(**spec: Any) -> JobRequested:
    fields = {"mode": "federated", "model": "mlp", "dataset": "mnist", "rounds": 3, **spec}
    return JobRequested.create(
        source="gateway", job_id="job-1", tenant="acme", spec=JobSpec.model_validate(fields)
    )


def _json(event: JobRequested) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(encode(event))
    return loaded


def _decode_error(raw: bytes) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(raw)
    return caught.value


def test_create_fills_the_envelope() -> None:
    before = datetime.now(UTC)

    event = _job()

    assert event.type == "job.requested"
    assert event.schema_version == JobRequested.SCHEMA_VERSION
    assert before - timedelta(milliseconds=1) <= event.time <= datetime.now(UTC)
    assert len(event.event_id) == 36
    assert event.traceparent.startswith("00-")
    assert _job().event_id != event.event_id


def test_child_traceparent_stays_in_the_trace() -> None:
    parent = _job().traceparent

    child = child_traceparent(parent)

    assert child.split("-")[1] == parent.split("-")[1]
    assert child.split("-")[2] != parent.split("-")[2]


def test_json_is_the_plain_avro_datum() -> None:
    event = _job()

    body = _json(event)

    assert body["time"] == int(event.time.timestamp() * 1000)
    assert body["spec"]["privacy"]["mode"] == "none"
    assert body["tracestate"] is None


def test_times_are_utc_with_millisecond_precision() -> None:
    local = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    event = decode(encode(_job().model_copy(update={"time": local}), "avro"))
    rebuilt = JobRequested.model_validate({**_job().model_dump(), "time": local})

    assert rebuilt.time == datetime(2025, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.time.tzinfo is not None


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        JobRequested.create(
            source="gateway",
            job_id="j",
            tenant="t",
            time=datetime(2025, 1, 1),  # naive on purpose
            spec=_job().spec,
        )


def test_heartbeat_is_keyed_by_client_id() -> None:
    beat = TrainerHeartbeat.create(
        source="trainer",
        job_id="",
        client_id="hospital-a",
        device="cpu",
        status="idle",
        capacity=1,
        interval_seconds=10,
    )

    assert beat.kafka_key() == b"hospital-a"
    assert _job().kafka_key() == b"job-1"


@pytest.mark.parametrize(
    ("raw", "failure"),
    [
        (b"", DecodeFailure.EMPTY),
        (b"{not json", DecodeFailure.BAD_JSON),
        (b"\xff\xfe", DecodeFailure.BAD_JSON),
        (b"[1, 2]", DecodeFailure.BAD_JSON),
        (b'{"type": "job.exploded"}', DecodeFailure.UNKNOWN_TYPE),
        (AVRO_MAGIC + b"\x02", DecodeFailure.BAD_AVRO),
    ],
)
def test_undecodable_bytes_raise_a_typed_non_retryable_error(
    raw: bytes, failure: DecodeFailure
) -> None:
    error = _decode_error(raw)

    assert error.failure is failure
    assert isinstance(error, NonRetryableError)


def test_oversized_message_is_refused_before_parsing() -> None:
    error = _decode_error(b"{" + b" " * MAX_EVENT_BYTES + b"}")

    assert error.failure is DecodeFailure.OVERSIZED
    assert str(MAX_EVENT_BYTES) in str(error)


def test_schema_violation_names_the_field() -> None:
    body = _json(_job())
    body["spec"]["rounds"] = "ten"

    error = _decode_error(json.dumps(body).encode())

    assert error.failure is DecodeFailure.SCHEMA_VIOLATION
    assert error.event_type == "job.requested"
    assert "rounds" in str(error)


def test_missing_required_field_is_a_schema_violation() -> None:
    body = _json(_job())
    del body["tenant"]

    error = _decode_error(json.dumps(body).encode())

    assert error.failure is DecodeFailure.SCHEMA_VIOLATION
    assert "tenant" in str(error)


def test_pydantic_constraints_apply_after_the_schema() -> None:
    body = _json(_job())
    body["traceparent"] = "not-a-traceparent"

    error = _decode_error(json.dumps(body).encode())

    assert error.failure is DecodeFailure.SCHEMA_VIOLATION
    assert "traceparent" in str(error)


def test_nan_is_refused() -> None:
    raw = encode(_job()).replace(b'"options":{}', b'"options":{"mu":NaN}')

    assert _decode_error(raw).failure is DecodeFailure.BAD_JSON


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = _job()
    body = _json(event)
    body["added_in_v2"] = {"anything": 1}

    assert decode(json.dumps(body).encode()) == event


def test_avro_with_trailing_bytes_is_refused() -> None:
    error = _decode_error(encode(_job(), "avro") + b"\x00")

    assert error.failure is DecodeFailure.BAD_AVRO


def test_avro_of_an_unreleased_version_is_refused() -> None:
    raw = bytearray(encode(_job(), "avro"))
    # After the magic byte: event_id (length 36 -> zigzag 72, then 36 bytes),
    # type (length 13 -> 26, then 13 bytes), then schema_version (v -> zigzag 2v).
    position = 1 + 1 + 36 + 1 + len("job.requested")
    assert raw[position] == 2 * JobRequested.SCHEMA_VERSION
    raw[position] = 18  # version 9

    error = _decode_error(bytes(raw))

    assert error.failure is DecodeFailure.UNSUPPORTED_VERSION


def test_encode_refuses_what_the_schema_refuses() -> None:
    event = Progress.create(source="trainer", job_id="j", phase="training", message="x" * 10)
    huge = event.model_copy(update={"message": "x" * (MAX_EVENT_BYTES + 1)})

    with pytest.raises(EventEncodeError, match="over"):
        encode(huge)


@given(st.binary(max_size=200))
def test_random_avro_bytes_never_escape_as_other_errors(body: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(AVRO_MAGIC + body)


@given(st.binary(min_size=1, max_size=200).filter(lambda b: not b.startswith(AVRO_MAGIC)))
def test_random_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(raw)
