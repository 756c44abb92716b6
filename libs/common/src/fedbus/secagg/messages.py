"""The protocol's messages, stage by stage, as frozen pydantic models.

They hold only ``str``, ``int`` and ``bytes`` fields, and JSON-encode bytes as base64,
so a service can put each on Kafka as it is, or (the masked vector) store its bytes in
object storage and send a reference. Stage names follow Flower's SecAgg+ workflow:

====================== ============================== ===============================
stage                   server to client               client to server
====================== ============================== ===============================
setup                   :class:`SecAggParams`          :class:`PublicKeys`
share keys              :class:`ShareKeysRequest`      :class:`EncryptedShares`
collect masked vectors  :class:`CollectRequest`        :class:`MaskedVector`
consistency check       :class:`ConsistencyRequest`    :class:`SurvivorSignature`
unmask                  :class:`UnmaskRequest`         :class:`RevealedShares`
====================== ============================== ===============================
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from fedbus.secagg.params import SecAggParams

__all__ = [
    "CollectRequest",
    "ConsistencyRequest",
    "EncryptedShares",
    "MaskedVector",
    "Message",
    "PublicKeys",
    "RevealedShares",
    "ShareKeysRequest",
    "SurvivorSignature",
    "UnmaskRequest",
    "survivors_statement",
]


class Message(BaseModel):
    """Base of every message: immutable, strict fields, bytes as base64 in JSON."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )


class PublicKeys(Message):
    """A client's two X25519 public keys for this round (advertised to everyone)."""

    client: str
    mask_key: bytes = Field(min_length=32, max_length=32)
    """Agreed with each neighbour into the pairwise mask seed."""
    share_key: bytes = Field(min_length=32, max_length=32)
    """Agreed with each neighbour into the key that encrypts the shares sent to it."""
    signature: bytes = b""
    """The client's signature over :meth:`statement` with its long-term identity key
    (empty when unsigned). Without it, a server that swaps a neighbour's keys for its
    own can read the shares sent to that neighbour."""

    def statement(self, params: SecAggParams) -> bytes:
        """The bytes the signature covers: session, parameters' digest, client, both keys.

        With the digest, keys signed for one set of parameters (clients, degree,
        threshold, graph seed, ...) are refused by a neighbour given another.
        """
        fields = [
            params.session,
            params.digest.hex(),
            self.client,
            self.mask_key.hex(),
            self.share_key.hex(),
        ]
        return b"fedbus-secagg/v1 public keys " + json.dumps(fields).encode()


class ShareKeysRequest(Message):
    """To one client: the public keys of its neighbours that advertised theirs."""

    recipient: str
    public_keys: dict[str, PublicKeys]


class EncryptedShares(Message):
    """From one client: a ciphertext per neighbour, for the server to forward.

    Each ciphertext holds the neighbour's Shamir shares (16 bytes each) of the client's
    self-mask seed and of the seed of its mask key. ``self_mask_commitment`` is SHA-256
    of the self-mask seed (bound to session and client), so the server can check a
    rebuilt seed; a rebuilt key is checked against the advertised public key.
    """

    client: str
    ciphertexts: dict[str, bytes]
    self_mask_commitment: bytes = Field(min_length=32, max_length=32)


class CollectRequest(Message):
    """To one client: the ciphertexts its neighbours addressed to it, by sender."""

    recipient: str
    ciphertexts: dict[str, bytes]


class MaskedVector(Message):
    """From one client: its masked, quantized update, little-endian uint32 values."""

    client: str
    data: bytes


class ConsistencyRequest(Message):
    """To each client that uploaded: the survivor list, the same for every survivor.

    Bonawitz et al. (2017)'s consistency check: each survivor signs the list once (see
    :func:`survivors_statement`); the signatures travel with the :class:`UnmaskRequest`.
    """

    recipient: str
    survivors: tuple[str, ...]


class SurvivorSignature(Message):
    """From one survivor: its identity key's signature over the survivor list it got.

    ``signature`` is empty when the client has no identity key (unsigned rounds).
    """

    client: str
    signature: bytes = b""


def survivors_statement(params: SecAggParams, survivors: tuple[str, ...]) -> bytes:
    """The bytes a survivor signs: session, the parameters' digest, the sorted list."""
    fields = [params.session, params.digest.hex(), sorted(survivors)]
    return b"fedbus-secagg/v1 survivors " + json.dumps(fields).encode()


class UnmaskRequest(Message):
    """To each client that signed: who uploaded (survivors) and who did not (dropped).

    A client reveals, for each neighbour whose shares it holds, the self-mask share of
    a survivor or the key share of a dropped client: never both for one neighbour.
    ``survivors`` must be the list the client signed, and ``signatures`` its
    neighbours' signatures over that same list (by client id; the server sends only
    the recipient's neighbours', the only ones it counts).
    """

    recipient: str
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    signatures: dict[str, bytes] = {}


class RevealedShares(Message):
    """From one client: the shares the unmask request asked for, by owner."""

    client: str
    self_mask_shares: dict[str, bytes]
    key_shares: dict[str, bytes]
