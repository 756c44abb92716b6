"""The envelope every event carries, and the field types that map one-to-one onto Avro.

The envelope is flattened: its fields are the first fields of every event record, in the
order of ``schemas/envelope.avsc``, so a reader can decode just that prefix of any Avro
binary event to learn its type and schema version.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
)
from pydantic_core import CoreSchema

from fedbus.events.text import StorableText, check_storable, storable_strings

__all__ = [
    "TIMESTAMP_MILLIS",
    "AvroType",
    "Event",
    "Int32",
    "Int64",
    "Metrics",
    "Record",
    "StorableText",
    "UtcDatetime",
    "check_storable",
    "child_traceparent",
    "new_traceparent",
    "utc_now",
]

TIMESTAMP_MILLIS: dict[str, str] = {"type": "long", "logicalType": "timestamp-millis"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


@dataclass(frozen=True)
class AvroType:
    """Marks a Python type with the Avro type it stands for (read by the schema check)."""

    schema: str | dict[str, str]


def _from_epoch_millis(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a timestamp must be epoch milliseconds or a datetime, not a bool")
    if isinstance(value, int):
        return _EPOCH + timedelta(milliseconds=value)
    return value


def _to_utc_millis(value: datetime) -> datetime:
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # decoded from epoch millis, or already exact: the common case
    if value.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous: give a timezone-aware one")
    # Avro timestamp-millis keeps milliseconds; truncating here keeps round trips exact.
    utc = value.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


@functools.cache
def _pinned_type(cls: type[BaseModel]) -> str:
    # Looked up for every event created, encoded or routed: read the model's fields once.
    default = cls.model_fields["type"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__} does not pin its event type")
    return default


def _epoch_millis(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1), AvroType("int")]
"""An Avro ``int``."""
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1), AvroType("long")]
"""An Avro ``long``."""
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_from_epoch_millis),
    AfterValidator(_to_utc_millis),
    PlainSerializer(_epoch_millis, return_type=int, when_used="json"),
    AvroType(TIMESTAMP_MILLIS),
]
"""An Avro ``long`` with logical type ``timestamp-millis``: UTC, millisecond precision.

In JSON it is the integer number of milliseconds since the Unix epoch.
"""
Metrics = dict[str, float]
"""An Avro ``map<double>`` of named, finite metrics."""


def utc_now() -> datetime:
    """Return the current UTC time, truncated to milliseconds as Avro keeps it.

    Returns
    -------
    datetime
        A timezone-aware UTC datetime.
    """
    return _to_utc_millis(datetime.now(UTC))


def new_traceparent() -> str:
    """Return a W3C ``traceparent`` that starts a new, sampled trace.

    Returns
    -------
    str
        ``00-<32 hex trace id>-<16 hex span id>-01``.
    """
    return _new_ids()[1]


def _new_ids() -> tuple[str, str]:
    """A random (version 4) UUID and a new trace's ``traceparent`` from one ``os.urandom``.

    The same kind of values as ``uuid.uuid4()`` and :func:`new_traceparent`, in about 40% of their
    time: every event created pays for them.
    """
    rand = bytearray(os.urandom(40))
    rand[6] = rand[6] & 0x0F | 0x40  # version 4
    rand[8] = rand[8] & 0x3F | 0x80  # RFC 4122 variant
    h = rand.hex()
    event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    return event_id, f"00-{h[32:64]}-{h[64:80]}-01"


def child_traceparent(parent: str) -> str:
    """Return a ``traceparent`` in the same trace as ``parent``, with a new span id.

    Parameters
    ----------
    parent
        The ``traceparent`` of the event being handled.

    Returns
    -------
    str
        The ``traceparent`` for an event caused by it.
    """
    version, trace_id, _span, flags = parent.split("-")
    return f"{version}-{trace_id}-{os.urandom(8).hex()}-{flags}"


class Record(BaseModel):
    """Base of every Avro record model: immutable, finite floats, unknown fields ignored.

    Ignoring unknown fields is what lets an older consumer read a newer event. Every
    string in a record (a field, a list item, a map key or value) refuses NUL and
    unpaired surrogates (:func:`~fedbus.events.text.check_storable`), so text that
    PostgreSQL cannot store is refused where it enters, with its location, and never
    reaches a store.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler, /
    ) -> CoreSchema:
        schema: CoreSchema = storable_strings(handler(source))
        return schema


class Event(Record):
    """Base of every event: the envelope fields, first in every event's schema.

    Subclasses pin ``type`` to their event type with a ``Literal`` and set
    ``SCHEMA_VERSION`` to the version in their ``.avsc``.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: Annotated[str, Field(pattern=_UUID)]
    type: str
    schema_version: Annotated[Int32, Field(ge=1)]
    time: UtcDatetime
    source: Annotated[str, Field(min_length=1)]
    job_id: str
    traceparent: Annotated[str, Field(pattern=_TRACEPARENT)]
    tracestate: str | None = None

    @classmethod
    def event_type(cls) -> str:
        """Return the event type string of this class (also its topic name)."""
        return _pinned_type(cls)

    @classmethod
    def create(
        cls,
        *,
        source: str,
        job_id: str,
        traceparent: str | None = None,
        tracestate: str | None = None,
        time: datetime | None = None,
        **payload: Any,
    ) -> Self:
        """Build an event with a filled envelope.

        Parameters
        ----------
        source
            The producing service.
        job_id
            The job (partition key); ``""`` for events outside a job.
        traceparent, tracestate
            W3C trace context; a new trace is started when ``traceparent`` is None.
            Pass ``child_traceparent(cause.traceparent)`` to continue a cause's trace.
        time
            When the fact happened; now when None.
        **payload
            The event's own fields.

        Returns
        -------
        Self
            The validated event with a new UUID, the time and this class's schema version.

        Raises
        ------
        pydantic.ValidationError
            When a field is missing or invalid.
        """
        event_id, new_trace = _new_ids()
        return cls(
            event_id=event_id,
            type=cls.event_type(),
            schema_version=cls.SCHEMA_VERSION,
            time=time if time is not None else utc_now(),
            source=source,
            job_id=job_id,
            traceparent=traceparent if traceparent is not None else new_trace,
            tracestate=tracestate,
            **payload,
        )

    def topic(self) -> str:
        """Return the topic this event is published on: its ``type`` unless the class says.

        An event addressed to one party (``round.assigned`` to one trainer) travels on a topic
        of its own, named by the class (:meth:`fedbus.events.RoundAssigned.topic`).
        """
        return self.type

    def kafka_key(self) -> bytes | None:
        """Return the Kafka message key: the UTF-8 job id (see ``schemas/topics.yaml``)."""
        return self.job_id.encode("utf-8")
