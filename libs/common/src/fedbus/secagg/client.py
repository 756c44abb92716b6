"""The client side of SecAgg+: keys, shares, the masked vector and the unmask answer.

One :class:`SecAggClient` per client per round. Its whole state is a
:class:`ClientState` (pydantic, JSON-serializable), so a trainer can persist it between
stages and resume after a restart. The state holds the round's private keys and
self-mask seed: store it as a secret (encrypted at rest), and drop it after the round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from fedbus.secagg import primitives as p
from fedbus.secagg.arith import quantize, reduce_mod
from fedbus.secagg.errors import InvalidMessageError, SecAggAbortedError
from fedbus.secagg.graph import neighbour_graph
from fedbus.secagg.messages import (
    CollectRequest,
    EncryptedShares,
    MaskedVector,
    PublicKeys,
    RevealedShares,
    ShareKeysRequest,
    UnmaskRequest,
)
from fedbus.secagg.params import SecAggParams

__all__ = ["ClientState", "SecAggClient", "Signer", "Verifier", "self_mask_commitment"]

ClientStage = Literal["share_keys", "collect", "unmask"]

Signer = Callable[[bytes], bytes]
"""Signs bytes with the client's long-term identity key."""

Verifier = Callable[[str, bytes, bytes], bool]
"""``verify(client, statement, signature)``: whether ``client``'s identity key signed it."""


class ClientState(BaseModel):
    """Everything a client must remember between stages (secrets included)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    params: SecAggParams
    client: str
    stage: ClientStage = "share_keys"
    mask_seed: bytes
    """The seed of this round's X25519 mask key (shared with the neighbours)."""
    share_private: bytes
    self_mask_seed: bytes = b""
    peers: dict[str, PublicKeys] = {}
    """Neighbours that advertised keys (to whom this client sent shares)."""
    held_shares: dict[str, bytes] = {}
    """Owner -> the 32 bytes this client holds: self-mask share, then mask-key share."""
    revealed: dict[str, Literal["self_mask", "key"]] = {}


def self_mask_commitment(seed: bytes, *, session: str, client: str) -> bytes:
    """SHA-256 of a self-mask seed, bound to its session and client."""
    return hashlib.sha256(json.dumps([session, client]).encode() + seed).digest()


class SecAggClient:
    """One client's run through the four stages.

    Examples
    --------
    >>> client, keys = SecAggClient.start(params, "site-a")       # doctest: +SKIP
    >>> shares = client.share_keys(share_keys_request)             # doctest: +SKIP
    >>> masked = client.mask(collect_request, update)              # doctest: +SKIP
    >>> answer = client.unmask(unmask_request)                     # doctest: +SKIP
    """

    def __init__(self, state: ClientState) -> None:
        self.state = state
        self._neighbours = neighbour_graph(
            state.params.clients, degree=state.params.neighbours, seed=state.params.graph_seed
        )[state.client]

    @classmethod
    def start(
        cls, params: SecAggParams, client: str, *, sign: Signer | None = None
    ) -> tuple[SecAggClient, PublicKeys]:
        """Setup: fresh key pairs for this round, and the public keys to advertise.

        ``sign`` (the client's long-term identity key, e.g. its bus signing key) signs the
        keys so that neighbours can check them (see :meth:`share_keys`).
        """
        if client not in params.clients:
            raise InvalidMessageError(f"{client} is not among the round's clients")
        state = ClientState(
            params=params,
            client=client,
            mask_seed=p.new_seed(),
            share_private=p.new_private_key(),
        )
        keys = PublicKeys(
            client=client,
            mask_key=p.public_key(p.private_key_from_seed(state.mask_seed)),
            share_key=p.public_key(state.share_private),
        )
        if sign is not None:
            keys = keys.model_copy(update={"signature": sign(keys.statement(params.session))})
        return cls(state), keys

    @property
    def neighbours(self) -> tuple[str, ...]:
        """This client's neighbours in the round's graph, sorted."""
        return self._neighbours

    def share_keys(
        self, request: ShareKeysRequest, *, verify: Verifier | None = None
    ) -> EncryptedShares:
        """Share keys: Shamir-share the self-mask seed and mask key among the neighbours.

        With ``verify(client, statement, signature)``, every neighbour's keys must carry
        that neighbour's valid signature: a server that substituted keys is refused
        before any share is encrypted to them. Without it the server is trusted to
        forward keys unchanged.

        Raises
        ------
        SecAggAbortedError
            If fewer than ``threshold`` neighbours advertised keys.
        InvalidMessageError
            If the request is out of stage, misaddressed, names a non-neighbour, or (with
            ``verify``) holds keys not signed by their owner.
        """
        self._expect("share_keys", request.recipient)
        params, me = self.state.params, self.state.client
        for owner, keys in request.public_keys.items():
            if owner not in self._neighbours or keys.client != owner:
                raise InvalidMessageError(f"{me}: keys of {owner} are not a neighbour's")
            statement = keys.statement(params.session)
            if verify is not None and not (
                keys.signature and verify(owner, statement, keys.signature)
            ):
                raise InvalidMessageError(
                    f"{me}: the keys given for {owner} are not signed by {owner}"
                )
        _enough(len(request.public_keys), params.threshold, f"{me}: neighbours with keys")
        seed = p.new_seed()
        k, t = len(self._neighbours), params.threshold
        seed_shares = p.split_secret(seed, threshold=t, shares=k)
        key_shares = p.split_secret(self.state.mask_seed, threshold=t, shares=k)
        ciphertexts = {}
        for i, neighbour in enumerate(self._neighbours):
            if neighbour in request.public_keys:
                channel = p.ShareChannel(
                    private=self.state.share_private,
                    peer_public=request.public_keys[neighbour].share_key,
                    session=params.session,
                    sender=me,
                    recipient=neighbour,
                )
                ciphertexts[neighbour] = channel.seal(seed_shares[i] + key_shares[i])
        self.state = self.state.model_copy(
            update={"stage": "collect", "self_mask_seed": seed, "peers": request.public_keys}
        )
        commitment = self_mask_commitment(seed, session=params.session, client=me)
        return EncryptedShares(client=me, ciphertexts=ciphertexts, self_mask_commitment=commitment)

    def mask(
        self,
        request: CollectRequest,
        update: npt.ArrayLike,
        *,
        weight: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> MaskedVector:
        """Collect masked vectors: keep the shares received, quantize and mask ``update``.

        ``update`` is the flat float update of ``params.dimension`` values; it is clipped
        to ``[-c, c]`` per coordinate, multiplied by ``weight`` (in ``(0, 1]``; 1 for an
        unweighted sum) and rounded stochastically with ``rng``.

        Raises
        ------
        SecAggAbortedError
            If fewer than ``threshold`` neighbours sent shares.
        InvalidMessageError
            If a ciphertext fails authentication, comes from a stranger, or the update
            has the wrong size or non-finite values, or the weight is out of range; the
            state is then unchanged.
        """
        self._expect("collect", request.recipient)
        params, me = self.state.params, self.state.client
        held = self._decrypt_all(request)
        _enough(len(held), params.threshold, f"{me}: neighbours that sent shares")
        values = np.asarray(update)
        if values.size != params.dimension:
            raise InvalidMessageError(
                f"{me}: update has {values.size} values, round expects {params.dimension}"
            )
        try:
            masked = quantize(
                values,
                clipping_range=params.clipping_range,
                levels=params.levels,
                rng=rng or np.random.default_rng(),
                weight=weight,
            )
        except ValueError as exc:
            raise InvalidMessageError(f"{me}: {exc}") from exc
        masked += p.expand_mask(self.state.self_mask_seed, params.dimension)
        mask_private = p.private_key_from_seed(self.state.mask_seed)
        for peer in sorted(held):
            seed = p.pairwise_seed(
                mask_private,
                self.state.peers[peer].mask_key,
                session=params.session,
                a=me,
                b=peer,
            )
            op = np.add if me < peer else np.subtract
            op(masked, p.expand_mask(seed, params.dimension), out=masked)
        reduce_mod(masked, bits=params.bits)
        self.state = self.state.model_copy(update={"stage": "unmask", "held_shares": held})
        return MaskedVector(client=me, data=masked.astype("<u4", copy=False).tobytes())

    def unmask(self, request: UnmaskRequest) -> RevealedShares:
        """Unmask: reveal survivors' self-mask shares and dropped clients' key shares.

        May be asked again (a retry); the answers stay consistent.

        Raises
        ------
        SecAggAbortedError
            If the lists overlap, fewer than ``threshold`` clients survived, or the
            server asks for the other secret of a neighbour than it asked for before:
            revealing both would unmask that neighbour's update.
        """
        self._expect("unmask", request.recipient)
        me, t = self.state.client, self.state.params.threshold
        survivors, dropped = set(request.survivors), set(request.dropped)
        if survivors & dropped:
            both = ", ".join(sorted(survivors & dropped))
            raise SecAggAbortedError(f"{me}: asked for both secrets of {both}; refusing")
        if me not in survivors:
            raise InvalidMessageError(
                f"{me}: unmask request does not list this client as a survivor"
            )
        _enough(len(survivors), t, f"{me}: survivors")
        wanted: dict[str, Literal["self_mask", "key"]] = {}
        for owner in self.state.held_shares:
            if owner in survivors or owner in dropped:
                kind: Literal["self_mask", "key"] = "self_mask" if owner in survivors else "key"
                if self.state.revealed.get(owner, kind) != kind:
                    raise SecAggAbortedError(
                        f"{me}: {owner}'s {self.state.revealed[owner]} share was already "
                        f"revealed; refusing its {kind} share"
                    )
                wanted[owner] = kind
        self.state = self.state.model_copy(update={"revealed": {**self.state.revealed, **wanted}})
        held = self.state.held_shares
        return RevealedShares(
            client=me,
            self_mask_shares={o: held[o][:16] for o, k in wanted.items() if k == "self_mask"},
            key_shares={o: held[o][16:] for o, k in wanted.items() if k == "key"},
        )

    def _expect(self, stage: ClientStage, recipient: str) -> None:
        if recipient != self.state.client:
            raise InvalidMessageError(f"{self.state.client}: request addressed to {recipient}")
        if self.state.stage != stage:
            raise InvalidMessageError(
                f"{self.state.client}: got a {stage} request in stage {self.state.stage}"
            )

    def _decrypt_all(self, request: CollectRequest) -> dict[str, bytes]:
        params, me = self.state.params, self.state.client
        held = {}
        for sender, ciphertext in request.ciphertexts.items():
            if sender not in self.state.peers:
                raise InvalidMessageError(
                    f"{me}: shares from {sender}, who is not a neighbour with keys"
                )
            plain = p.ShareChannel(
                private=self.state.share_private,
                peer_public=self.state.peers[sender].share_key,
                session=params.session,
                sender=sender,
                recipient=me,
            ).open(ciphertext)
            if len(plain) != 2 * p.SEED_BYTES:
                raise InvalidMessageError(
                    f"{me}: shares from {sender} have {len(plain)} bytes, not 32"
                )
            held[sender] = plain
        return held


def _enough(count: int, threshold: int, what: str) -> None:
    """Fail closed when ``count`` is below the threshold."""
    if count < threshold:
        raise SecAggAbortedError(f"{what}: {count}, fewer than the threshold {threshold}")
