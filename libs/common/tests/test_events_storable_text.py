"""Text that PostgreSQL cannot store (NUL, unpaired surrogates) never gets into a record.

Every string of a :class:`~fedbus.events.Record` is checked: a field, a nested record's
field, a list item, a map key and a map value. Bytes from the bus that carry such text are
dead-lettered with the field named.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from fastavro import schemaless_writer
from pydantic import ValidationError

from fedbus.bus import ConsumerRunner, InMemoryIdempotencyStore, RetryPolicy
from fedbus.events import (
    AVRO_MAGIC,
    DeadLetter,
    Event,
    EventDecodeError,
    JobRequested,
    Record,
    RoundStarted,
    decode,
    encode,
    to_datum,
)
from fedbus.events.registry import event_spec, event_types
from fedbus.events.schemas import schema_dir
from fedbus.jobspec import check_spec
from fedbus.settings import FedbusSettings

NUL = "contains a NUL character, which cannot be stored"
SURROGATE = "contains an unpaired surrogate, which cannot be stored"
SPEC: dict[str, Any] = {
    "mode": "federated",
    "model": "cnn",
    "dataset": "mnist",
    "rounds": 2,
    "strategy": {"name": "fedavg", "options": {"server_lr": 1.0}},
}


class Labels(Record):
    """A record with every container of strings an event can have."""

    name: str
    tags: list[str]
    labels: dict[str, str]
    note: str | None = None


def requested(**changes: Any) -> JobRequested:
    payload: dict[str, Any] = {"tenant": "a", "idempotency_key": "k", "spec": SPEC, **changes}
    return JobRequested.create(source="gateway", job_id="job-1", **payload)


def only_error(error: pytest.ExceptionInfo[ValidationError]) -> tuple[tuple[Any, ...], str, str]:
    [problem] = error.value.errors()
    return problem["loc"], problem["msg"], problem["type"]


@pytest.mark.parametrize(
    ("text", "message", "kind"),
    [("a\x00b", NUL, "string_nul"), ("\ud800", SURROGATE, "string_surrogate"),
     ("ok\udfff", SURROGATE, "string_surrogate"), ("é\x00", NUL, "string_nul")],
    ids=["nul", "high-surrogate", "low-surrogate-after-ascii", "nul-after-non-ascii"],
)  # fmt: skip
def test_a_field_with_unstorable_text_is_refused_by_name(
    text: str, message: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as error:
        requested(idempotency_key=text)

    assert only_error(error) == (("idempotency_key",), message, kind)


def test_the_envelope_fields_are_checked_too() -> None:
    with pytest.raises(ValidationError) as error:
        JobRequested.create(source="gateway", job_id="a\x00b", tenant="a", spec=SPEC)

    assert only_error(error)[:2] == (("job_id",), NUL)


@pytest.mark.parametrize(
    ("spec", "loc", "message"),
    [
        ({**SPEC, "model": "cnn\x00"}, ("spec", "model"), NUL),
        ({**SPEC, "dataset": "\ud800"}, ("spec", "dataset"), SURROGATE),
        (
            {**SPEC, "strategy": {"name": "fedavg", "options": {"lr\x00": 1.0}}},
            ("spec", "strategy", "options", "lr\x00", "[key]"),
            NUL,
        ),
    ],
    ids=["model", "dataset", "strategy-option-key"],
)
def test_a_nested_records_field_is_refused_with_its_path(
    spec: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        requested(spec=spec)

    assert only_error(error)[:2] == (loc, message)


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"tags": ["ok", "b\x00d"]}, ("tags", 1), NUL),
        ({"labels": {"k\ud83d": "v"}}, ("labels", "k\ud83d", "[key]"), SURROGATE),
        ({"labels": {"k": "\x00"}}, ("labels", "k"), NUL),
        ({"note": "\udc80"}, ("note",), SURROGATE),
    ],
    ids=["list-item", "dict-key", "dict-value", "optional"],
)
def test_containers_of_strings_are_checked_item_by_item(
    changes: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    fields: dict[str, Any] = {"name": "n", "tags": [], "labels": {}, **changes}

    with pytest.raises(ValidationError) as error:
        Labels.model_validate(fields)

    found, found_message, _ = only_error(error)
    # pydantic reports a key with a surrogate in it lossily (U+FFFD): compare the rest.
    assert (found[::2], found_message) == (loc[::2], message)


def test_every_bad_string_is_reported_not_just_the_first() -> None:
    with pytest.raises(ValidationError) as error:
        Labels.model_validate({"name": "\x00", "tags": ["\ud800"], "labels": {}})

    assert [e["loc"] for e in error.value.errors()] == [("name",), ("tags", 0)]


def test_a_list_of_strings_in_a_real_event_is_checked() -> None:
    datum = {**to_datum(_round_started()), "selected_clients": ["c1", "c\x002"]}

    with pytest.raises(ValidationError) as error:
        RoundStarted.model_validate(datum)

    assert only_error(error)[:2] == (("selected_clients", 1), NUL)


def _round_started() -> RoundStarted:
    return RoundStarted.create(
        source="orchestration", job_id="job-1", round=1, selected_clients=["c1"], min_clients=1,
        deadline=0, model="cnn", dataset="mnist", training={}, strategy={}, privacy={}, seed=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text", ["modèle-日本", "😀 emoji", "tab\tand newline\n", "\u00ff\uffff", "ascii"]
)
def test_valid_unicode_text_is_accepted_and_round_trips(text: str) -> None:
    event = requested(spec={**SPEC, "model": text}, idempotency_key=text)

    for fmt in ("json", "avro"):
        decoded = decode(encode(event, fmt))
        assert isinstance(decoded, JobRequested)
        assert (decoded.spec.model, decoded.idempotency_key) == (text, text)


def test_a_surrogate_pair_escaped_in_json_is_one_valid_character() -> None:
    raw = encode(requested()).replace(
        b'"idempotency_key":"k"', b'"idempotency_key":"\\ud83d\\ude00"'
    )

    decoded = decode(raw)

    assert isinstance(decoded, JobRequested)
    assert decoded.idempotency_key == "\U0001f600"


def test_json_with_a_nul_escape_does_not_decode_and_names_the_field() -> None:
    raw = encode(requested()).replace(b'"dataset":"mnist"', b'"dataset":"mn\\u0000ist"')

    with pytest.raises(EventDecodeError) as error:
        decode(raw)

    assert error.value.problems == (f"spec.dataset: {NUL}",)


def test_json_with_a_lone_surrogate_escape_does_not_decode() -> None:
    raw = encode(requested()).replace(b'"dataset":"mnist"', b'"dataset":"\\ud800"')

    with pytest.raises(EventDecodeError):
        decode(raw)


def test_avro_decoding_goes_through_the_same_checks() -> None:
    # fastavro writes what it is given; the reader side must refuse it.
    datum = {**to_datum(requested()), "tenant": "a\x00"}
    buffer = io.BytesIO(AVRO_MAGIC)
    buffer.seek(0, io.SEEK_END)
    schemaless_writer(buffer, event_spec(JobRequested).schema, datum)

    with pytest.raises(EventDecodeError) as error:
        decode(buffer.getvalue())

    assert error.value.problems == (f"tenant: {NUL}",)


@pytest.mark.parametrize(
    ("spec", "loc", "message"),
    [
        ({**SPEC, "dataset": "\ud800"}, ("spec", "dataset"), SURROGATE),
        ({**SPEC, "model": "m\x00"}, ("spec", "model"), NUL),
        (
            {**SPEC, "strategy": {"name": "fedavg", "options": {"\udc00": 1.0}}},
            ("spec", "strategy", "options", "\\udc00", "[key]"),
            SURROGATE,
        ),
    ],
    ids=["surrogate-value", "nul-value", "surrogate-key"],
)
def test_the_job_spec_check_locates_unstorable_text(
    spec: dict[str, Any], loc: tuple[str, ...], message: str
) -> None:
    # JSON text cannot carry a lone surrogate to pydantic's parser; the check still names it.
    [problem] = check_spec(spec)

    assert (problem.loc, problem.message) == (loc, message)


# --- the consumer dead-letters such records with the field named --------------------------


class FakePublisher:
    """Records what the runner publishes."""

    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes]] = []

    async def publish(self, event: Event) -> None:
        raise AssertionError("nothing but dead letters is expected")

    async def publish_many(self, events: Iterable[Event]) -> None:
        raise AssertionError("nothing but dead letters is expected")

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.raw.append((topic, value))

    def dead_letters(self) -> list[DeadLetter]:
        return [
            d for t, v in self.raw if t.endswith(".dlq") and isinstance(d := decode(v), DeadLetter)
        ]


def consumer_record(
    value: bytes, key: bytes, headers: list[tuple[str, bytes]]
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="job.requested", partition=0, offset=3, timestamp=0, timestamp_type=0, key=key,
        value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=headers,
    )  # fmt: skip


async def never(event: Event) -> None:
    raise AssertionError("a record with unstorable text must not reach a handler")


async def dead_letter_of(
    value: bytes, key: bytes = b"job-1", headers: tuple[tuple[str, bytes], ...] = ()
) -> tuple[str, DeadLetter]:
    publisher = FakePublisher()
    runner = ConsumerRunner(
        FedbusSettings(_env_file=None),  # type: ignore[call-arg]
        group_id="g",
        handlers={JobRequested: never},
        producer=publisher,
        idempotency=InMemoryIdempotencyStore(),
        retry=RetryPolicy(attempts=1, initial_backoff_s=0.001),
    )
    outcome = await runner.handle_record(consumer_record(value, key, list(headers)))
    [letter] = publisher.dead_letters()
    assert [topic for topic, _ in publisher.raw] == ["job.requested.dlq"]
    return outcome, letter


async def test_a_json_event_with_a_nul_in_a_field_is_dead_lettered_naming_it() -> None:
    value = encode(requested()).replace(b'"model":"cnn"', b'"model":"cnn\\u0000"')

    outcome, letter = await dead_letter_of(value)

    assert outcome == "dead_lettered"
    assert f"spec.model: {NUL}" in letter.error_message
    assert base64.b64decode(letter.original_value_b64) == value


async def test_a_nul_in_a_map_key_is_dead_lettered_with_the_key_escaped() -> None:
    # The field path itself holds the NUL; the dead letter must still be storable.
    datum = json.loads(encode(requested()))
    datum["spec"]["strategy"]["options"] = {"lr\x00": 1.0}
    value = json.dumps(datum).encode()

    outcome, letter = await dead_letter_of(value, key=b"job\x00-1", headers=(("h\x00", b"v"),))

    assert outcome == "dead_lettered"
    assert "spec.strategy.options.lr\\x00.[key]" in letter.error_message
    assert NUL in letter.error_message
    assert letter.job_id == ""
    assert [h.key for h in letter.original_headers] == ["h\\x00"]


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every string value in a JSON datum (keys are checked by the tests above)."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_paths(v, (*path, i))]
    return []


def _with_nul(datum: Any, path: tuple[Any, ...]) -> Any:
    copy = json.loads(json.dumps(datum))
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] += "\x00"
    return copy


@pytest.mark.parametrize("event_type", event_types())
def test_every_string_of_every_event_refuses_a_nul(event_type: str) -> None:
    # From the golden examples: no str field of any event model escapes the check.
    spec = event_spec(event_type)
    datum = json.loads((schema_dir() / "examples" / f"{event_type}.json").read_text())
    paths = [p for p in _string_paths(datum) if p != ("type",)]  # the type is a Literal
    assert paths

    kinds = set()
    for path in paths:
        with pytest.raises(ValidationError) as error:
            spec.model.model_validate(_with_nul(datum, path))
        [problem] = error.value.errors()
        assert problem["loc"] == path
        kinds.add(problem["type"])
    # Ids and enums refuse it by their own pattern or symbols; free text by the NUL check.
    assert kinds <= {"string_nul", "string_pattern_mismatch", "enum", "literal_error"}
    assert "string_nul" in kinds
