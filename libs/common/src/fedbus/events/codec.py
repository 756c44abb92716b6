"""Encoding events to bytes and decoding bytes to events, JSON or Avro binary.

JSON (the default) is the event as a plain JSON object: exactly the Avro datum, with
timestamps as epoch milliseconds, enums as their symbol, unions untagged (``null`` or
the value), maps as objects. Avro binary is one magic byte ``0xFB`` followed by the
fastavro schemaless encoding of the record. ``decode`` tells the two apart by the
first byte (a JSON object starts with ``{``, possibly after whitespace).
"""

from __future__ import annotations

import io
import json
import logging
import re
from enum import StrEnum
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate
from pydantic import ValidationError

from fedbus.errors import NonRetryableError
from fedbus.events.envelope import Event
from fedbus.events.registry import EventSpec, UnknownEventTypeError, event_spec
from fedbus.events.schemas import SchemaNotFoundError, envelope_schema

__all__ = [
    "AVRO_MAGIC",
    "MAX_EVENT_BYTES",
    "DecodeFailure",
    "EventDecodeError",
    "EventEncodeError",
    "WireFormat",
    "decode",
    "encode",
    "from_datum",
    "to_datum",
]

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1_000_000
"""Largest encoded event accepted, below Kafka's default ``message.max.bytes`` (1 MiB)."""
AVRO_MAGIC = b"\xfb"
"""First byte of an Avro binary event; never the first byte of a JSON object."""
# Corrupt Avro bytes surface as any of these from fastavro's reader.
_AVRO_READ_ERRORS = (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError)


class WireFormat(StrEnum):
    """The two wire encodings."""

    JSON = "json"
    AVRO = "avro"


class DecodeFailure(StrEnum):
    """What was wrong with bytes that did not decode."""

    EMPTY = "empty"
    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    BAD_AVRO = "bad_avro"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA_VIOLATION = "schema_violation"


class EventDecodeError(NonRetryableError):
    """Bytes that are not a valid event; the consumer dead-letters them.

    Attributes
    ----------
    failure
        The kind of failure.
    event_type
        The event type, when it could be read.
    problems
        One line per problem, naming the field where there is one.
    """

    def __init__(
        self, failure: DecodeFailure, problems: list[str], *, event_type: str | None = None
    ) -> None:
        self.failure = failure
        self.event_type = event_type
        self.problems = tuple(problems)
        subject = f" {event_type}" if event_type else ""
        super().__init__(f"cannot decode{subject} event ({failure}): {'; '.join(problems)}")


class EventEncodeError(NonRetryableError):
    """An event that cannot be put on the wire (breaks its schema, or too large)."""


def _schema_problems(error: AvroValidationError) -> list[str]:
    # fastavro's own text repeats whole schemas; name the field and the wrong value only.
    return [
        f"{item.field or '<record>'}: got {type(item.datum).__name__} {item.datum!r:.80}"
        for item in error.errors
    ]


def _pydantic_problems(error: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
    ]


def to_datum(event: Event) -> dict[str, Any]:
    """Return ``event`` as its Avro datum (equal to its JSON object).

    ``schema_version`` is always the model's current version: that is the schema the
    datum is written with.
    """
    datum = event.model_dump(mode="json")
    datum["schema_version"] = type(event).SCHEMA_VERSION
    return datum


def from_datum(datum: dict[str, Any], spec: EventSpec) -> Event:
    """Return the model of ``spec`` validated from an Avro datum or JSON object.

    Raises
    ------
    EventDecodeError
        With ``SCHEMA_VIOLATION`` and the failing fields.
    """
    try:
        return spec.model.model_validate(datum)
    except ValidationError as error:
        problems = _pydantic_problems(error)
        raise EventDecodeError(
            DecodeFailure.SCHEMA_VIOLATION, problems, event_type=spec.event_type
        ) from error


def encode(event: Event, fmt: WireFormat | str = WireFormat.JSON) -> bytes:
    """Encode ``event`` for Kafka.

    Parameters
    ----------
    event
        Any registered event.
    fmt
        ``"json"`` (default) or ``"avro"`` (magic byte + schemaless Avro binary).

    Returns
    -------
    bytes
        The message value.

    Raises
    ------
    EventEncodeError
        When the event breaks its schema or encodes larger than ``MAX_EVENT_BYTES``.

    Notes
    -----
    The JSON path trusts the model: a constructed event was validated by pydantic, and
    ``tests/contract`` pins every model to its Avro schema field by field, so validating the
    datum again against the schema would only cost time (it is the largest cost of encoding).
    Decoding always validates, since the bytes come from outside.
    """
    spec = event_spec(type(event))
    if WireFormat(fmt) is WireFormat.AVRO:
        datum = to_datum(event)
        _check_schema(datum, spec)
        buffer = io.BytesIO()
        buffer.write(AVRO_MAGIC)
        schemaless_writer(buffer, spec.schema, datum)
        raw = buffer.getvalue()
    elif event.schema_version == spec.version:
        # pydantic-core writes the same compact JSON as ``to_datum`` + ``json.dumps`` (events
        # hold no NaN or infinity: their models refuse them) in about a third of the time.
        raw = event.__pydantic_serializer__.to_json(event)
    else:  # an event decoded from an older version is re-encoded as the current one
        datum = to_datum(event)
        raw = json.dumps(datum, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventEncodeError(f"{spec.event_type} is {len(raw)} bytes, over {MAX_EVENT_BYTES}")
    return raw


def _check_schema(datum: dict[str, Any], spec: EventSpec) -> None:
    try:
        validate(datum, spec.schema, raise_errors=True)
    except AvroValidationError as error:
        problems = "; ".join(_schema_problems(error))
        raise EventEncodeError(f"{spec.event_type} breaks its schema: {problems}") from error


def decode(raw: bytes) -> Event:
    """Decode a message value (JSON or Avro binary) into its event model.

    Raises
    ------
    EventDecodeError
        When the bytes are empty, oversized, not JSON/Avro, of an unknown type or
        version, or break the event's schema; ``problems`` names the fields.
    """
    if not raw:
        raise EventDecodeError(DecodeFailure.EMPTY, ["the message has no bytes"])
    if len(raw) > MAX_EVENT_BYTES:
        problem = f"{len(raw)} bytes, over the limit of {MAX_EVENT_BYTES}"
        raise EventDecodeError(DecodeFailure.OVERSIZED, [problem])
    if raw.startswith(AVRO_MAGIC):
        return _decode_avro(raw[len(AVRO_MAGIC) :])
    return _decode_json(raw)


def _spec_for(event_type: object) -> EventSpec:
    if not isinstance(event_type, str):
        raise EventDecodeError(
            DecodeFailure.SCHEMA_VIOLATION, [f"type: expected a string, got {event_type!r:.80}"]
        )
    try:
        return event_spec(event_type)
    except UnknownEventTypeError as error:
        problem = f"type: no event type {event_type!r:.80}"
        raise EventDecodeError(DecodeFailure.UNKNOWN_TYPE, [problem]) from error


def _parse_json(raw: bytes) -> dict[str, Any]:
    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        loaded = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise EventDecodeError(DecodeFailure.BAD_JSON, [str(error)]) from error
    if not isinstance(loaded, dict):
        problem = f"expected a JSON object, got {type(loaded).__name__}"
        raise EventDecodeError(DecodeFailure.BAD_JSON, [problem])
    return loaded


_TYPE_FIELD = re.compile(rb'"type"\s*:\s*"([a-z][a-z0-9._-]{0,63})"')


def _decode_json(raw: bytes) -> Event:
    fast = _decode_json_fast(raw)
    return fast if fast is not None else _decode_json_careful(raw)


def _decode_json_fast(raw: bytes) -> Event | None:
    """One strict pass when the first ``"type"`` names a known event; None on any doubt.

    A wrong guess (a nested ``"type"`` key, say) fails the model's ``type`` literal and falls
    back to the careful path, which also words the error.
    """
    match = _TYPE_FIELD.search(raw)
    if match is None:
        return None
    try:
        return event_spec(match.group(1).decode()).model.model_validate_json(raw, strict=True)
    except (UnknownEventTypeError, ValidationError, ValueError):
        return None


def _decode_json_careful(raw: bytes) -> Event:
    datum = _parse_json(raw)
    spec = _spec_for(datum.get("type"))
    # The current schema reads every compatible version: older events lack only fields
    # with defaults, newer ones add only fields that are ignored here. Pydantic in strict
    # JSON mode enforces what the Avro schema does (types without coercion, enum symbols,
    # int ranges, required fields; the models are pinned to the schemas field by field in
    # tests/contract) at a fraction of the cost of fastavro's validator.
    try:
        return spec.model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        problems = _pydantic_problems(error)
        raise EventDecodeError(
            DecodeFailure.SCHEMA_VIOLATION, problems, event_type=spec.event_type
        ) from error


def _read(body: bytes, writer: dict[str, Any], reader: dict[str, Any] | None) -> Any:
    stream = io.BytesIO(body)
    try:
        datum = schemaless_reader(stream, writer, reader)
    except _AVRO_READ_ERRORS as error:
        raise EventDecodeError(
            DecodeFailure.BAD_AVRO, [f"{type(error).__name__}: {error}"]
        ) from error
    return datum, stream.tell()


def _decode_avro(body: bytes) -> Event:
    envelope, _ = _read(body, envelope_schema(), None)
    spec = _spec_for(envelope["type"])
    version = envelope["schema_version"]
    try:
        writer = spec.writer_schema(version)
    except SchemaNotFoundError as error:
        problem = f"schema_version: no released version {version} (current {spec.version})"
        raise EventDecodeError(
            DecodeFailure.UNSUPPORTED_VERSION, [problem], event_type=spec.event_type
        ) from error
    reader = None if version == spec.version else spec.schema
    datum, consumed = _read(body, writer, reader)
    if consumed != len(body):
        problem = f"{len(body) - consumed} bytes left after the record"
        raise EventDecodeError(DecodeFailure.BAD_AVRO, [problem], event_type=spec.event_type)
    logger.debug("decoded %s v%s from Avro binary", spec.event_type, version)
    return from_datum(datum, spec)
