"""The public keys that sign events, published by the operator on the compacted key topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedbus.events.envelope import Event

__all__ = ["KeyPublished"]


class KeyPublished(Event):
    """An Ed25519 public key that signs events, and whose it is.

    Published on the compacted ``key.published`` topic, keyed by ``key_id`` (a revocation by
    ``revoked:<key_id>``, which stays), and signed by an operator root key whose public half every
    consumer is configured with (``FEDBUS_ROOT_PUBLIC_KEYS``). ``role`` is a producer name of
    the topic catalog (``orchestration``, ``trainer``, ``upstream``, ...) or ``operator``;
    a consumer accepts an event signed by this key only on a topic that role produces.
    ``binds`` pins event fields: a trainer's key binds ``client_id`` to its own id, an
    outside producer's binds ``tenant``; an event signed by the key whose field says
    otherwise is refused. A revoked key stays revoked: a later ``active`` record for the same
    ``key_id`` does not bring it back.
    """

    type: Literal["key.published"] = "key.published"
    key_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str = Field(pattern=r"^[A-Za-z0-9+/]{43}=$")
    principal: str = Field(min_length=1)
    role: str = Field(min_length=1)
    binds: dict[str, str] = Field(default_factory=dict)
    status: Literal["active", "revoked"] = "active"
    reason: str | None = None

    def kafka_key(self) -> bytes | None:
        """Return the Kafka message key: the key id, or ``revoked:<key id>`` for a revocation.

        A revocation has a compaction key of its own, so no later record of the key (an
        ``active`` one published again) can compact it away.
        """
        prefix = "revoked:" if self.status == "revoked" else ""
        return f"{prefix}{self.key_id}".encode()
