"""The cryptographic primitives, all from maintained libraries.

- X25519 key agreement, HKDF-SHA256, AES-256-CTR (the PRG) and ChaCha20-Poly1305 (the
  AEAD for shares) from ``cryptography``;
- Shamir secret sharing over GF(2^128) from PyCryptodome
  (``Crypto.Protocol.SecretSharing.Shamir``), which shares 16-byte secrets. Both
  secrets a client shares are 128-bit seeds: the self-mask seed is an AES-128 key, and
  the X25519 mask key is derived from its seed by HKDF, so one sharing covers each
  (sharing the 32-byte key itself would take two, and rebuilding dominates the server's
  time). 128 bits matches X25519's own security level.

Every derivation is bound to the round's ``session`` and to the two parties, so a seed,
key or ciphertext from one round or one pair is worthless in another.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedbus.secagg.errors import InvalidMessageError

__all__ = [
    "KEY_BYTES",
    "SEED_BYTES",
    "ShareChannel",
    "check_public_key",
    "combine_secret",
    "expand_mask",
    "new_private_key",
    "new_seed",
    "pairwise_seed",
    "private_key_from_seed",
    "public_key",
    "split_secret",
]

KEY_BYTES = 32
"""Length of every private key, public key and derived (pairwise) seed."""

SEED_BYTES = 16
"""Length of the secrets a client shares: its self-mask seed and its mask key's seed."""

_NONCE_BYTES = 12
_LABEL = b"fedbus-secagg/v1"
_ZERO_IV = bytes(16)  # each PRG key is used once: a fixed counter block is safe


def new_private_key() -> bytes:
    """A fresh X25519 private key, as its 32 raw bytes."""
    return X25519PrivateKey.generate().private_bytes_raw()


def new_seed() -> bytes:
    """A fresh 128-bit secret from the OS."""
    return os.urandom(SEED_BYTES)


def private_key_from_seed(seed: bytes) -> bytes:
    """The X25519 private key derived from a 16-byte seed (HKDF-SHA256)."""
    info = _LABEL + b" x25519 mask key"
    raw = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(seed)
    return X25519PrivateKey.from_private_bytes(raw).private_bytes_raw()


def public_key(private: bytes) -> bytes:
    """The raw public key of an X25519 private key."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def check_public_key(raw: bytes, *, owner: str, what: str) -> None:
    """Refuse a public key no agreement can use: wrong length or of small order.

    X25519 with a small-order point (e.g. all zeros) gives the all-zero shared secret
    whatever the private key, so one trial agreement with a throwaway key finds it.

    Raises
    ------
    InvalidMessageError
        Naming ``owner`` and ``what`` key it is.
    """
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError as exc:
        raise InvalidMessageError(
            f"{owner}'s {what} is not a usable X25519 public key (small order or malformed)"
        ) from exc


def _agree(
    private: bytes, peer_public: bytes, *, session: str, purpose: str, ids: list[str]
) -> bytes:
    """HKDF-SHA256 of the X25519 shared secret, bound to session, purpose and ids."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
    except ValueError as exc:
        raise InvalidMessageError(f"not an X25519 public key: {exc}") from exc
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(peer)
    except ValueError as exc:  # a small-order point: the shared secret would be zero
        raise InvalidMessageError(
            f"key agreement for {purpose} between {' and '.join(ids)} failed: "
            "a public key of small order"
        ) from exc
    info = _LABEL + b" " + json.dumps([purpose, *ids]).encode()
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=session.encode(), info=info
    ).derive(shared)


def pairwise_seed(private: bytes, peer_public: bytes, *, session: str, a: str, b: str) -> bytes:
    """The mask seed ``a`` and ``b`` share (the same from either side)."""
    return _agree(private, peer_public, session=session, purpose="mask", ids=sorted([a, b]))


def expand_mask(seed: bytes, size: int) -> npt.NDArray[np.uint32]:
    """``size`` uniform 32-bit words: the AES-CTR keystream of ``seed`` (16 or 32 bytes)."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_IV)).encryptor()
    stream = encryptor.update(bytes(4 * size))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32, copy=False)


@dataclass(frozen=True)
class ShareChannel:
    """ChaCha20-Poly1305 for shares from ``sender`` to ``recipient`` in ``session``.

    The key is HKDF of the X25519 agreement of the two share keys, bound to the session
    and the direction; session, sender and recipient are the associated data, so a
    ciphertext opens only for the pair, direction and round it was sealed for. Either
    side builds it: the sender with its private key and the recipient's public key, the
    recipient with its private key and the sender's public key.
    """

    private: bytes
    peer_public: bytes
    session: str
    sender: str
    recipient: str

    def _cipher(self) -> tuple[ChaCha20Poly1305, bytes]:
        ids = [self.sender, self.recipient]
        key = _agree(
            self.private, self.peer_public, session=self.session, purpose="shares", ids=ids
        )
        aad = _LABEL + b" " + json.dumps([self.session, *ids]).encode()
        return ChaCha20Poly1305(key), aad

    def seal(self, plaintext: bytes) -> bytes:
        """``nonce || ciphertext || tag`` (a random 96-bit nonce)."""
        cipher, aad = self._cipher()
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + cipher.encrypt(nonce, plaintext, aad)

    def open(self, ciphertext: bytes) -> bytes:
        """The plaintext of :meth:`seal`.

        Raises
        ------
        InvalidMessageError
            If the ciphertext was changed, or sealed for another pair, direction or round.
        """
        cipher, aad = self._cipher()
        try:
            return cipher.decrypt(ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], aad)
        except (InvalidTag, ValueError) as exc:
            raise InvalidMessageError(
                f"shares from {self.sender} to {self.recipient} fail authentication "
                "(changed or misaddressed)"
            ) from exc


def split_secret(secret: bytes, *, threshold: int, shares: int) -> list[bytes]:
    """Shamir shares of a 16-byte secret; share ``i`` (0-based) has index ``i + 1``."""
    return [share for _, share in Shamir.split(threshold, shares, secret)]


def combine_secret(shares: dict[int, bytes]) -> bytes:
    """The 16-byte secret from ``{index: share}`` (exactly the threshold's count)."""
    return bytes(Shamir.combine(sorted(shares.items())))
