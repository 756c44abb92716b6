"""The one place the bus meets the event contracts: encoding, decoding, keys, dead letters."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Literal

from opentelemetry import propagate

from fedbus.events import DeadLetter, Event, EventDecodeError, KafkaHeader, decode, encode

__all__ = [
    "Event",
    "EventDecodeError",
    "WireFormat",
    "dead_letter_for",
    "decode_event",
    "encode_event",
    "event_key",
]

WireFormat = Literal["json", "avro"]

MAX_ORIGINAL_BYTES = 512 * 1024
"""Largest original value a dead letter carries whole (base64 grows it by a third)."""


def encode_event(event: Event, fmt: WireFormat = "json") -> bytes:
    """Serialise ``event`` in the wire format (JSON by default, Avro binary as configured)."""
    return encode(event, fmt)


def decode_event(raw: bytes) -> Event:
    """Decode JSON or Avro binary into its event model; raises :class:`EventDecodeError`."""
    return decode(raw)


def event_key(event: Event) -> bytes | None:
    """The Kafka message key: the job id (a trainer's client id for heartbeats)."""
    return event.kafka_key()


def dead_letter_for(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]],
    error: BaseException,
    attempts: int,
    source: str,
) -> bytes:
    """Encode the dead-letter record of a record that could not be handled."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    message = _storable(str(error)[:4000])
    if len(value) > MAX_ORIGINAL_BYTES:
        # The whole value would not fit in an event; the original stays in its topic.
        message += (
            f" [original value truncated to its first {MAX_ORIGINAL_BYTES} of {len(value)} bytes;"
            f" the full record is {topic}[{partition}]@{offset}]"
        )
        value = value[:MAX_ORIGINAL_BYTES]
    letter = DeadLetter.create(
        source=source,
        job_id=_job_id_of(key),
        traceparent=carrier.get("traceparent"),
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_value_b64=base64.b64encode(value).decode(),
        original_headers=[
            KafkaHeader(
                key=_storable(k), value_b64=base64.b64encode(v).decode() if v is not None else None
            )
            for k, v in headers
        ],
        error_type=type(error).__name__,
        error_message=message,
        attempts=attempts,
    )
    return encode(letter, "json")


def _job_id_of(key: bytes | None) -> str:
    if key is None:
        return ""
    try:
        job_id = key.decode()
    except UnicodeDecodeError:
        return ""
    return "" if "\x00" in job_id else job_id


def _storable(text: str) -> str:
    """``text`` with NUL and surrogates escaped: a reason may quote the bad input it names."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
