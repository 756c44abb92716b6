"""Check 1: every record's signature and signer, by the rules every fedbus consumer applies.

A record passes when it is signed by a key a root-signed ``key.published`` record published
and did not revoke, its signature (and Merkle inclusion proof) verifies, it decodes to an
event that belongs on its topic, the key's role produces the topic, every field the key is
bound to names the key's own party, and its Kafka key is its event's. What fails is named by
``topic[partition]@offset`` and the consumers' reason (``unsigned``, ``unknown_key``,
``revoked_key``, ``bad_signature``, ``not_a_producer``, ``bound_field``, ``wrong_key``) and
left out of every other check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedbus.bus.signing import EventSignatureError, KeyDirectory, is_signed
from fedbus.events import Event, EventDecodeError, TopicCatalog, decode
from fedbus_cli.audit.report import Check

__all__ = ["LogRecord", "Seen", "admit_record", "check_signatures"]

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class LogRecord:
    """One Kafka record as read from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @property
    def where(self) -> str:
        """``topic[partition]@offset``."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Seen:
    """An event whose record passed check 1, and where it was."""

    event: Event
    where: str


def check_signatures(
    records: Iterable[LogRecord], keys: KeyDirectory | None, catalog: TopicCatalog
) -> tuple[Check, list[Seen]]:
    """Check every record; returns the verdict and the events that passed, in log order.

    Without ``keys`` (no root public keys given) nothing can be verified: the check fails
    and the events are still decoded for the other checks.
    """
    check = Check("signatures", "1. Signatures and signers")
    if keys is None:
        check.fail("FEDBUS_ROOT_PUBLIC_KEYS", "no root public key given: no signature checked")
    passed: list[Seen] = []
    for record in records:
        check.checked += 1
        try:
            event = admit_record(record, keys, catalog)
        except EventSignatureError as exc:
            check.fail(record.where, str(exc))
            continue
        except (EventDecodeError, ValueError) as exc:
            check.fail(record.where, f"not an event of this topic: {exc}")
            continue
        passed.append(Seen(event, record.where))
    return check, passed


def admit_record(
    record: LogRecord,
    keys: KeyDirectory | None,
    catalog: TopicCatalog,
    *,
    unsigned_allowed: bool = False,
) -> Event:
    """The record's event when a fedbus consumer would admit it; raises why it would not.

    The consumer's order (``fedbus.bus.consumer``): the signature is checked before a byte is
    parsed, then the event must belong on its topic (``catalog.admit``), its signer's role
    must produce the topic and its bound fields name the signer's party, and the record's
    Kafka key must be its event's. With ``unsigned_allowed`` (a deployment that does not
    require signatures) an unsigned record skips the signer's checks, as a consumer's does;
    a signed one is checked all the same. Without ``keys`` nothing can be verified: the event
    is decoded and checked against its topic only.

    Raises
    ------
    EventSignatureError
        ``unsigned``, ``unknown_key``, ``revoked_key``, ``bad_signature``,
        ``not_a_producer``, ``bound_field`` or ``wrong_key``.
    EventDecodeError, ValueError
        The bytes are not an event, or not one of this topic.
    """
    headers = list(record.headers)
    if record.value is None and not unsigned_allowed:
        raise EventSignatureError("unsigned", "a tombstone (null value) carries no signature")
    signer = None
    if (
        keys is not None
        and record.value is not None
        and (is_signed(headers) or not unsigned_allowed)
    ):
        signer = keys.verify_signature(record.topic, record.key, record.value, headers)
    event = catalog.admit(decode(record.value or b""), record.topic)
    if keys is None or signer is None:
        return event
    keys.check_authority(signer, record.topic, event)
    if record.key != event.kafka_key():
        raise EventSignatureError(
            "wrong_key", f"the record's Kafka key {record.key!r} is not its event's"
        )
    return event
