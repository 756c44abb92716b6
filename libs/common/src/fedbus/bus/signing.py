"""Signed events: who said it, checked by every consumer.

Every process has an Ed25519 key (``FEDBUS_SIGNING_KEY_FILE``). The producer signs each
record over its topic, its key, the headers that carry meaning and its value; the key's id,
the signature and an inclusion proof travel in three headers (``fedbus-key-id``,
``fedbus-signature``, ``fedbus-proof``). The operator publishes each public key on the
compacted ``key.published`` topic with whose it is (``principal``), what it may sign
(``role``: a producer name of the topic catalog) and the event fields it is bound to
(``binds``: a trainer's ``client_id``, a tenant's ``tenant``); each of those records is signed
in turn by an operator root key, whose public half every consumer is given
(``FEDBUS_ROOT_PUBLIC_KEYS``). A consumer that requires signatures
(``FEDBUS_REQUIRE_SIGNATURES``, on by default outside development) dead-letters a record
that is unsigned, signed by a key it cannot find or that was revoked, whose signature does
not verify, whose key's role does not produce the topic, or whose bound field says another
party. So a trainer can no longer speak for another trainer on a shared topic, although the
broker lets it write there.

One Ed25519 signature costs about as much as encoding a 1 KB event, so the records of one
``publish_many`` are signed in batches: a record's leaf is ``SHA-256(0x00 || input)``, the
batch's RFC 6962 Merkle root is signed once (with the batch size), and each record carries
its index, the size and its audit path, so it still verifies on its own (RFC 9162 2.1.3.2);
a consumer checks each distinct (key, signature, root) once. A single record is a batch of
one. The signed input of a record is length-prefixed fields under a fixed label::

    b"fedbus-event-signature-v1" | topic | key (or absent) | content-type | value

and the signed message of a batch is the label, its size (4 bytes) and its root. Trace
headers are not signed: they steer tracing, never a decision.

>>> signer = Signer(generate_key())
>>> headers = signer.sign("progress", b"job-1", b"{}", [("content-type", b"application/json")])
>>> [name for name, _ in headers]
['content-type', 'fedbus-key-id', 'fedbus-signature', 'fedbus-proof']
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import logging
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from fedbus.bus.codec import decode_event, encode_event
from fedbus.errors import NonRetryableError
from fedbus.events import DeadLetter, Event, EventDecodeError, KeyPublished, TopicCatalog
from fedbus.settings import FedbusSettings

__all__ = [
    "KEY_ID_HEADER",
    "KEY_TOPIC",
    "OPERATOR_ROLE",
    "PROOF_HEADER",
    "SIGNATURE_HEADER",
    "EventSignatureError",
    "KafkaKeyDirectory",
    "KeyDirectory",
    "SignedBy",
    "Signer",
    "generate_key",
    "is_signed",
    "key_id_of",
    "key_record",
    "leaf_hash",
    "load_private_key",
    "merkle_tree",
    "parse_public_key",
    "public_key_b64",
    "publish_key",
    "root_from_path",
    "signing_input",
    "write_private_key",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "fedbus-signature"
KEY_ID_HEADER = "fedbus-key-id"
PROOF_HEADER = "fedbus-proof"
_OWN_HEADERS = (SIGNATURE_HEADER, KEY_ID_HEADER, PROOF_HEADER)
SIGNED_HEADERS = ("content-type",)
"""Headers that change what the value means, and so are signed."""
KEY_TOPIC = "key.published"
OPERATOR_ROLE = "operator"
"""The role of the operator's own key: it may sign any topic (the operator runs the bus)."""
READ_TIMEOUT_S = 30.0
"""The longest a read of ``key.published`` may take before the directory keeps what it has."""
_LABEL = b"fedbus-event-signature-v1"
_ABSENT = 0xFFFFFFFF


class EventSignatureError(NonRetryableError):
    """A record whose signature is missing, unknown, revoked, invalid or not its signer's to
    make; the consumer dead-letters it with this message.

    Attributes
    ----------
    reason
        ``unsigned``, ``unknown_key``, ``revoked_key``, ``bad_signature``, ``not_a_producer``
        or ``bound_field``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key id: the first 16 bytes of SHA-256 of the 32 raw public-key bytes, in hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(_raw_public(public)).digest()[:16].hex()


def public_key_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The 32 raw public-key bytes, standard base64."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(_raw_public(public)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text (``public_key_b64``).

    Raises
    ------
    ValueError
        When the text is not base64 of 32 bytes.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public key {text!r} is not base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"public key {text!r} is {len(raw)} bytes, not 32 (Ed25519)")
    return Ed25519PublicKey.from_public_bytes(raw)


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    path.chmod(0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file (a mounted secret).

    Raises
    ------
    ValueError
        When the file holds no Ed25519 private key; the message names the file.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"signing key {path}: not an Ed25519 key ({type(key).__name__})")
    return key


def _field(data: bytes | None) -> bytes:
    if data is None:
        return struct.pack(">I", _ABSENT)
    return struct.pack(">I", len(data)) + data


def signing_input(
    topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]
) -> bytes:
    """The bytes a record's signature covers: topic, key, the signed headers, value."""
    found = dict(headers)
    parts = [_LABEL, _field(topic.encode()), _field(key)]
    parts += [_field(found.get(name)) for name in SIGNED_HEADERS]
    parts.append(_field(value))
    return b"".join(parts)


def _header(headers: Sequence[tuple[str, bytes | None]], name: str) -> bytes | None:
    values = [v for k, v in headers if k == name]
    if len(values) != 1:
        return None  # none, or two (which one was meant?): treated as unsigned
    return values[0]


def is_signed(headers: Sequence[tuple[str, bytes | None]]) -> bool:
    """Whether a record carries a signature header (valid or not)."""
    return any(k in _OWN_HEADERS for k, _ in headers)


def leaf_hash(
    topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]
) -> bytes:
    """A record's leaf in its batch's Merkle tree: SHA-256(0x00 || signing input)."""
    return hashlib.sha256(b"\x00" + signing_input(topic, key, value, headers)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The RFC 6962 Merkle tree hash of ``leaves`` and each leaf's audit path (deepest first).

    Built level by level: adjacent nodes pair up and an odd last node rises unchanged, which
    gives RFC 6962's tree (its left subtrees are complete).
    """
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    paths = []
    for index in range(len(leaves)):
        path, i = [], index
        for level in levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i >>= 1
        paths.append(path)
    return levels[-1][0], paths


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162, 2.1.3.2); None when it is malformed."""
    nodes = _path_nodes(index, size, leaf, path)
    return None if nodes is None else nodes[-1]


def _path_nodes(
    index: int,
    size: int,
    leaf: bytes,
    path: Sequence[bytes],
    known: Callable[[bytes], bool] | None = None,
) -> list[bytes] | None:
    """RFC 9162 2.1.3.2's walk, keeping each node from the leaf up to the root.

    With ``known``, the walk stops at the first node for which it is true (that node is the
    list's last); otherwise it ends at the root. None when the proof is malformed.
    """
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    nodes = [leaf]
    if known is not None and known(leaf):
        return nodes
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        nodes.append(r)
        if known is not None and known(r):
            return nodes
        fn, sn = fn >> 1, sn >> 1
    return nodes if sn == 0 else None


def _proof_walk(
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]],
    known: Callable[[bytes], bool] | None = None,
) -> tuple[int, list[bytes]] | None:
    """The batch size and the nodes from a record's leaf up to its root (or the first
    ``known`` one); None if the proof is malformed."""
    proof = _header(headers, PROOF_HEADER)
    if proof is None or len(proof) < 8 or (len(proof) - 8) % 32:
        return None
    index, size = struct.unpack(">II", proof[:8])
    path = [proof[i : i + 32] for i in range(8, len(proof), 32)]
    nodes = _path_nodes(index, size, leaf_hash(topic, key, value, headers), path, known)
    return None if nodes is None else (size, nodes)


def _proven_root(
    topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]
) -> tuple[int, bytes] | None:
    """The batch size and Merkle root a record's inclusion proof leads to; None if malformed."""
    proof = _header(headers, PROOF_HEADER)
    if proof is None or len(proof) < 8 or (len(proof) - 8) % 32:
        return None
    index, size = struct.unpack(">II", proof[:8])
    path = [proof[i : i + 32] for i in range(8, len(proof), 32)]
    root = root_from_path(index, size, leaf_hash(topic, key, value, headers), path)
    return None if root is None else (size, root)


def _root_message(size: int, root: bytes) -> bytes:
    """What the key signs: a batch's size and Merkle root, under a fixed label."""
    return _LABEL + struct.pack(">I", size) + root


class Signer:
    """Signs records with one private key.

    A batch of records gets one Ed25519 signature, over the RFC 6962 Merkle root of their
    leaf hashes; each record carries that signature, the key id and its own inclusion proof
    (``fedbus-proof``: its index, the batch size, the audit path), so each still verifies
    alone. A single record is a batch of one (its leaf is the root, the path empty).

    Parameters
    ----------
    key
        The Ed25519 private key.
    """

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = key_id_of(key)
        self._key_id_bytes = self.key_id.encode("ascii")

    @classmethod
    def from_settings(cls, settings: FedbusSettings) -> Signer | None:
        """The signer of ``FEDBUS_SIGNING_KEY_FILE``, or None when it is not set."""
        if settings.signing_key_file is None:
            return None
        return cls(load_private_key(settings.signing_key_file))

    def sign(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> list[tuple[str, bytes]]:
        """``headers`` without any earlier signature, plus this key's id, signature and proof."""
        return self.sign_batch([(topic, key, value, headers)])[0]

    def sign_batch(
        self, records: Sequence[tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]]]]
    ) -> list[list[tuple[str, bytes]]]:
        """Each record's headers with one signature over the batch (see the class)."""
        kept = [
            [(k, v) for k, v in headers if k not in _OWN_HEADERS] for _, _, _, headers in records
        ]
        leaves = [
            leaf_hash(topic, key, value, h)
            for (topic, key, value, _), h in zip(records, kept, strict=True)
        ]
        root, paths = merkle_tree(leaves)
        size = len(leaves)
        signature = self._key.sign(_root_message(size, root))
        own = [(KEY_ID_HEADER, self._key_id_bytes), (SIGNATURE_HEADER, signature)]
        return [
            [*h, *own, (PROOF_HEADER, struct.pack(">II", i, size) + b"".join(path))]
            for i, (h, path) in enumerate(zip(kept, paths, strict=True))
        ]


@dataclass
class SignedBy:
    """A public key that signs events, as its ``key.published`` record says."""

    key_id: str
    public_key: Ed25519PublicKey
    principal: str
    role: str
    binds: dict[str, str] = field(default_factory=dict)
    revoked: bool = False


class KeyDirectory:
    """The public keys consumers verify with, from root-signed ``key.published`` records.

    Parameters
    ----------
    roots
        The operator's root public keys; a key record must be signed by one of them.
    catalog
        The topic catalog: a key may sign only the topics its role produces.
    """

    def __init__(self, roots: Iterable[Ed25519PublicKey], catalog: TopicCatalog) -> None:
        self._roots = {key_id_of(k): k for k in roots}
        self._catalog = catalog
        self._keys: dict[str, SignedBy] = {}
        self._producer_cache: dict[str, frozenset[str]] = {}
        self._proven: dict[bytes, str] = {}  # tree node -> the key whose signature covers it

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> SignedBy | None:
        """The key with this id, when a verified record published it."""
        return self._keys.get(key_id)

    def add_record(
        self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]
    ) -> SignedBy | None:
        """Take in one ``key.published`` record; returns its key, or None when it was refused
        (not signed by a root key, undecodable, or its id does not match its key)."""
        where = f"{KEY_TOPIC} record {key!r}"
        key_id, signature = _header(headers, KEY_ID_HEADER), _header(headers, SIGNATURE_HEADER)
        root = self._roots.get(key_id.decode("ascii", "replace")) if key_id else None
        if root is None or signature is None:
            log.warning("%s skipped: not signed by a root key of FEDBUS_ROOT_PUBLIC_KEYS", where)
            return None
        proven = _proven_root(KEY_TOPIC, key, value, headers)
        try:
            if proven is None:
                raise InvalidSignature
            root.verify(signature, _root_message(*proven))
        except InvalidSignature:
            log.warning("%s skipped: its root signature does not verify", where)
            return None
        try:
            event = decode_event(value)
        except EventDecodeError as exc:
            log.warning("%s skipped: %s", where, exc)
            return None
        if not isinstance(event, KeyPublished):
            log.warning("%s skipped: a %s event", where, event.type)
            return None
        public = parse_public_key(event.public_key)
        if key_id_of(public) != event.key_id or (key is not None and key != event.kafka_key()):
            log.warning("%s skipped: key id %s is not its key's", where, event.key_id)
            return None
        known = self._keys.get(event.key_id)
        if known is not None and known.revoked:
            return known  # revocation sticks: an older "active" record does not undo it
        signed = SignedBy(event.key_id, public, event.principal, event.role, dict(event.binds),
                          revoked=event.status == "revoked")  # fmt: skip
        self._keys[event.key_id] = signed
        return signed

    def verify_signature(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> SignedBy:
        """Check a record's signature with a known key; returns the key.

        Raises
        ------
        EventSignatureError
            ``unsigned``, ``unknown_key``, ``revoked_key`` or ``bad_signature``.
        """
        key_id, signature = _header(headers, KEY_ID_HEADER), _header(headers, SIGNATURE_HEADER)
        if key_id is None or signature is None:
            raise EventSignatureError(
                "unsigned", f"no single {KEY_ID_HEADER} and {SIGNATURE_HEADER} header"
            )
        kid = key_id.decode("ascii", "replace")
        signer = self._keys.get(kid)
        if signer is None:
            raise EventSignatureError("unknown_key", f"key {kid} is not on {KEY_TOPIC}")
        if signer.revoked:
            raise EventSignatureError("revoked_key", f"key {kid} of {signer.principal} was revoked")
        for name in SIGNED_HEADERS:
            if sum(1 for k, _ in headers if k == name) > 1:
                raise EventSignatureError("bad_signature", f"two {name} headers (key {kid})")
        # A batch's records share one signature. Every node on a path whose root this key's
        # signature covered is proven; a record whose walk meets one is in that signed tree
        # (SHA-256 with 0x00/0x01 domain separation), so its signature is already checked and
        # the walk stops there (a batch's later records: their leaf and one node).
        proven = self._proven
        walk = _proof_walk(topic, key, value, headers, lambda node: proven.get(node) == kid)
        if walk is None:
            raise EventSignatureError(
                "bad_signature", f"no well-formed {PROOF_HEADER} header (key {kid})"
            )
        size, nodes = walk
        if proven.get(nodes[-1]) == kid:
            return signer
        try:
            signer.public_key.verify(signature, _root_message(size, nodes[-1]))
        except InvalidSignature:
            raise EventSignatureError(
                "bad_signature",
                f"the signature of key {kid} ({signer.principal}) does not "
                "verify: the record was changed or signed for another topic or key",
            ) from None
        if len(proven) >= 262_144:
            proven.clear()
        for node in nodes:
            proven[node] = kid
        return signer

    def _producers(self, topic: str) -> frozenset[str]:
        """The roles that produce ``topic`` (a family member: its family's); none if unknown."""
        found = self._producer_cache.get(topic)
        if found is None:
            spec = self._catalog.family_of(topic)
            if spec is None:
                spec = next((t for t in self._catalog.topics if t.name == topic), None)
            found = frozenset(spec.producers) if spec is not None else frozenset()
            if len(self._producer_cache) < 100_000:
                self._producer_cache[topic] = found
        return found

    async def verify(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> SignedBy:
        """:meth:`verify_signature` (a directory that can learn new keys reads them first)."""
        return self.verify_signature(topic, key, value, headers)

    def check_authority(self, signer: SignedBy, topic: str, event: Event) -> None:
        """Check that ``signer`` may say ``event`` on ``topic``.

        Raises
        ------
        EventSignatureError
            ``not_a_producer`` when its role does not produce the topic; ``bound_field`` when
            a field its key is bound to says another party.
        """
        if signer.role != OPERATOR_ROLE and signer.role not in self._producers(topic):
            raise EventSignatureError(
                "not_a_producer",
                f"{signer.principal} signs as {signer.role}, which does not produce {topic}",
            )
        for name, bound in signer.binds.items():
            if name not in type(event).model_fields:
                if isinstance(event, DeadLetter):
                    continue  # a letter names no party: the record it carries was checked
                raise EventSignatureError(
                    "bound_field",
                    f"{signer.principal}'s key is bound to {name} {bound!r}; a {event.type} "
                    f"event has no {name}",
                )
            if getattr(event, name) != bound:
                raise EventSignatureError(
                    "bound_field",
                    f"{signer.principal}'s key is bound to {name} {bound!r}; the event says "
                    f"{getattr(event, name)!r}",
                )


class KafkaKeyDirectory(KeyDirectory):
    """A :class:`KeyDirectory` that reads ``key.published`` from the broker.

    :meth:`start` reads the topic to its end; a record signed by a key not seen yet makes it
    read to the end again (at most once per ``min_refresh_s``), and it looks for new records
    (a revocation) at least every ``settings.keys_refresh_s`` seconds.
    """

    def __init__(
        self,
        settings: FedbusSettings,
        catalog: TopicCatalog,
        *,
        min_refresh_s: float = 1.0,
    ) -> None:
        super().__init__(settings.root_public_key_list(), catalog)
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0
        self._min_refresh_s = min_refresh_s
        self._max_age_s = settings.keys_refresh_s

    async def start(self) -> None:
        """Read every key record so far."""
        consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            partitions = await _partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            await self._read_to_end()
        except BaseException:
            await self.stop()
            raise
        log.info("key directory: %d keys from %s", len(self), KEY_TOPIC)

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def refresh(self, *, force: bool = False) -> None:
        """Read the records published since the last read (concurrent calls read once)."""
        due = self._min_refresh_s if force else self._max_age_s
        if time.monotonic() - self._last_refresh < due:
            return
        async with self._lock:
            if time.monotonic() - self._last_refresh < due:
                return
            await self._read_or_keep()

    async def verify(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> SignedBy:
        """:meth:`verify_signature`, reading new key records first when the key is unknown
        (or the directory is older than ``keys_refresh_s``)."""
        await self.refresh()
        kid = _header(headers, KEY_ID_HEADER)
        if kid is not None and self.get(kid.decode("ascii", "replace")) is None:
            # A key published a moment ago: wait for the next allowed read (at most
            # min_refresh_s) rather than refuse its first records for good.
            wait = self._min_refresh_s - (time.monotonic() - self._last_refresh)
            if wait > 0:
                await asyncio.sleep(wait)
            await self.refresh(force=True)
        return self.verify_signature(topic, key, value, headers)

    async def _read_to_end(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("KafkaKeyDirectory.start() was not called")
        async with asyncio.timeout(READ_TIMEOUT_S):
            partitions = list(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.add_record(record.key, record.value or b"", list(record.headers or ()))
        self._last_refresh = time.monotonic()

    async def _read_or_keep(self) -> None:
        """:meth:`_read_to_end`; when the broker fails, keep the keys known so far (a record
        signed by a key not among them is refused as ``unknown_key``) and try again later."""
        try:
            await self._read_to_end()
        except (TimeoutError, KafkaError) as exc:
            self._last_refresh = time.monotonic()
            log.warning("key directory not refreshed (kept %d keys): %r", len(self), exc)


async def _partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    for _ in range(100):
        found = consumer.partitions_for_topic(KEY_TOPIC)
        if found:
            return [TopicPartition(KEY_TOPIC, p) for p in sorted(found)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {KEY_TOPIC} not found: create the catalog's topics first")


def key_record(
    key: Ed25519PublicKey | Ed25519PrivateKey,
    *,
    principal: str,
    role: str,
    binds: dict[str, str] | None = None,
    revoked: bool = False,
    reason: str | None = None,
) -> KeyPublished:
    """The ``key.published`` event of ``key``."""
    return KeyPublished.create(
        source=OPERATOR_ROLE,
        job_id="",
        key_id=key_id_of(key),
        public_key=public_key_b64(key),
        principal=principal,
        role=role,
        binds=dict(binds or {}),
        status="revoked" if revoked else "active",
        reason=reason,
    )


async def publish_key(settings: FedbusSettings, root: Ed25519PrivateKey, event: Event) -> None:
    """Publish a ``key.published`` event signed by the root key (as ``settings``' principal,
    which must be allowed to write the topic: the operator's)."""
    value = encode_event(event, "json")
    key = event.kafka_key()
    headers = Signer(root).sign(KEY_TOPIC, key, value, [("content-type", b"application/json")])
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(KEY_TOPIC, value, key=key, headers=headers)
    finally:
        await producer.stop()


def _load_or_make(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    key = generate_key()
    write_private_key(path, key)
    return key


def main(argv: Sequence[str] | None = None) -> int:
    """The operator's key tool.

    ``root --key FILE`` makes the root key if it is missing and prints its public half (the
    value of ``FEDBUS_ROOT_PUBLIC_KEYS``). ``issue --root FILE --key FILE --principal P
    --role R [--bind field=value]`` makes the key if missing and publishes its record signed
    by the root; ``--public-key B64`` instead of ``--key`` publishes a key whose private half
    never leaves its owner (``public`` prints it from a key file). ``revoke`` publishes the
    record with ``status: revoked``. ``list`` prints the directory as a consumer sees it.
    """
    from fedbus.bus.topics import catalog
    from fedbus.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m fedbus.bus.signing", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    root_cmd = sub.add_parser("root")
    root_cmd.add_argument("--key", type=Path, required=True)
    public_cmd = sub.add_parser("public")
    public_cmd.add_argument("--key", type=Path, required=True)
    for name in ("issue", "revoke"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--root", type=Path, required=True)
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("--key", type=Path, help="the private key file (made if missing)")
        which.add_argument(
            "--public-key", help="the public key, base64: a site keeps its private key"
        )
        cmd.add_argument("--principal", required=True)
        cmd.add_argument("--role", required=True)
        cmd.add_argument("--bind", action="append", default=[], metavar="FIELD=VALUE")
        cmd.add_argument("--reason")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    if args.command == "root":
        print(public_key_b64(_load_or_make(args.key)))
        return 0
    if args.command == "public":
        print(public_key_b64(load_private_key(args.key)))
        return 0
    settings: FedbusSettings = load_settings()
    if args.command == "list":
        return asyncio.run(_list(settings, catalog()))
    binds = dict(b.split("=", 1) for b in args.bind)
    root = load_private_key(args.root)
    key: Ed25519PrivateKey | Ed25519PublicKey
    if args.public_key:
        key = parse_public_key(args.public_key)
    else:
        key = _load_or_make(args.key) if args.command == "issue" else load_private_key(args.key)
    event = key_record(key, principal=args.principal, role=args.role, binds=binds,
                       revoked=args.command == "revoke", reason=args.reason)  # fmt: skip
    asyncio.run(publish_key(settings, root, event))
    print(f"{args.command}d key {key_id_of(key)} of {args.principal} ({args.role})")
    return 0


async def _list(settings: FedbusSettings, catalog: TopicCatalog) -> int:
    directory = KafkaKeyDirectory(settings, catalog)
    await directory.start()
    try:
        for kid in sorted(directory._keys):
            k = directory._keys[kid]
            state = "revoked" if k.revoked else "active"
            print(f"{kid} {state} {k.principal} role={k.role} binds={k.binds}")
    finally:
        await directory.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
