"""Decoding JSON is as strict as the Avro schema: no silent type coercion."""

from __future__ import annotations

import json

import pytest

from fedbus.events import DecodeFailure, EventDecodeError, JobRequested, JobSpec, decode, encode


def request_json() -> dict[str, object]:
    spec = JobSpec.model_validate(
        {"mode": "federated", "model": "cnn", "dataset": "mnist", "rounds": 3}
    )
    event = JobRequested.create(source="upstream", job_id="job-1", tenant="t", spec=spec)
    return dict(json.loads(encode(event)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("rounds", "3"), ("rounds", 3.0), ("rounds", True), ("mode", 1), ("min_clients", None)],
)
def test_a_value_of_the_wrong_json_type_is_a_schema_violation(field: str, value: object) -> None:
    datum = request_json()
    datum["spec"][field] = value  # type: ignore[index]

    with pytest.raises(EventDecodeError) as err:
        decode(json.dumps(datum).encode())

    assert err.value.failure is DecodeFailure.SCHEMA_VIOLATION
    assert any(field in problem for problem in err.value.problems)


def test_well_typed_json_decodes_with_enums_and_timestamps() -> None:
    datum = request_json()

    event = decode(json.dumps(datum).encode())

    assert isinstance(event, JobRequested)
    assert event.spec.mode.value == "federated"
    assert int(event.time.timestamp() * 1000) == datum["time"]
