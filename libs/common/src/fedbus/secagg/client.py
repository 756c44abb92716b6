"""The client side of SecAgg+: keys, shares, the masked vector and the unmask answer.

One :class:`SecAggClient` per client per round. Its whole state is a
:class:`ClientState` (pydantic, JSON-serializable), so a trainer can persist it between
stages and resume after a restart. The state holds the round's private keys and
self-mask seed: store it as a secret (encrypted at rest), and drop it after the round.

Save the state after each call and BEFORE sending what it returned. A client restarted
from an older state could otherwise answer one stage twice differently: a second
masked vector under the same masks (their difference is the difference of the
updates), or a signature on a second survivor list. The state records what was sent
(the masked vector's SHA-256, the signed list, the unmask request answered), so a
retry from the saved state resends the same answer or is refused.
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
    ConsistencyRequest,
    EncryptedShares,
    MaskedVector,
    PublicKeys,
    RevealedShares,
    ShareKeysRequest,
    SurvivorSignature,
    UnmaskRequest,
    survivors_statement,
)
from fedbus.secagg.params import SecAggParams

__all__ = ["ClientState", "SecAggClient", "Signer", "Verifier", "self_mask_commitment"]

ClientStage = Literal["share_keys", "collect", "consistency", "unmask"]

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
    rounding_seed: bytes
    """Seeds the stochastic rounding, so masking the same update twice gives the same bytes."""
    peers: dict[str, PublicKeys] = {}
    """Neighbours that advertised keys (to whom this client sent shares)."""
    held_shares: dict[str, bytes] = {}
    """Owner -> the 32 bytes this client holds: self-mask share, then mask-key share."""
    masked_sha256: bytes = b""
    """SHA-256 of the masked vector sent: a retry must match it."""
    signed_survivors: tuple[str, ...] | None = None
    """The one survivor list this client signed (it signs no other)."""
    answered_unmask: bytes = b""
    """SHA-256 of the unmask request answered (survivors and dropped): empty until this
    client revealed shares, and it answers no other request. With :attr:`signed_survivors`
    fixed, each neighbour is a survivor or dropped once for all, so the one secret of it
    revealed never changes."""

    def rounding_rng(self) -> np.random.Generator:
        """The generator :meth:`SecAggClient.mask` rounds with (fresh each call)."""
        return np.random.default_rng(int.from_bytes(self.rounding_seed, "little"))


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
            rounding_seed=p.new_seed(),
        )
        keys = PublicKeys(
            client=client,
            mask_key=p.public_key(p.private_key_from_seed(state.mask_seed)),
            share_key=p.public_key(state.share_private),
        )
        if sign is not None:
            keys = keys.model_copy(update={"signature": sign(keys.statement(params))})
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
            If the request is out of stage, misaddressed, names a non-neighbour, holds a
            public key of small order, or (with ``verify``) keys not signed by their owner.
        """
        self._expect("share_keys", request.recipient)
        params, me = self.state.params, self.state.client
        for owner, keys in request.public_keys.items():
            if owner not in self._neighbours or keys.client != owner:
                raise InvalidMessageError(f"{me}: keys of {owner} are not a neighbour's")
            statement = keys.statement(params)
            if verify is not None and not (
                keys.signature and verify(owner, statement, keys.signature)
            ):
                raise InvalidMessageError(
                    f"{me}: the keys given for {owner} are not signed by {owner}"
                )
            p.check_public_key(keys.mask_key, owner=owner, what="mask key")
            p.check_public_key(keys.share_key, owner=owner, what="share key")
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
    ) -> MaskedVector:
        """Collect masked vectors: keep the shares received, quantize and mask ``update``.

        ``update`` is the flat float update of ``params.dimension`` values; it is clipped
        to ``[-c, c]`` per coordinate, multiplied by ``weight`` (in ``(0, 1]``; 1 for an
        unweighted sum) and rounded stochastically with :meth:`ClientState.rounding_rng`.

        Asked again after it answered (a retry from the saved state), it recomputes the
        vector and returns it only if it is byte for byte the one sent: a second,
        different vector under the same masks would reveal the difference.

        Raises
        ------
        SecAggAbortedError
            If fewer than ``threshold`` neighbours sent shares, or a retry's vector
            differs from the one sent (another update, request or weight).
        InvalidMessageError
            If a ciphertext fails authentication, comes from a stranger, or the update
            has the wrong size or non-finite values, or the weight is out of range; the
            state is then unchanged.
        """
        params, me = self.state.params, self.state.client
        retry = self.state.stage != "collect" and bool(self.state.masked_sha256)
        if not retry:
            self._expect("collect", request.recipient)
        elif request.recipient != me:
            raise InvalidMessageError(f"{me}: request addressed to {request.recipient}")
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
                rng=self.state.rounding_rng(),
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
        data = masked.astype("<u4", copy=False).tobytes()
        digest = hashlib.sha256(data).digest()
        if retry:
            if digest != self.state.masked_sha256 or held != self.state.held_shares:
                raise SecAggAbortedError(
                    f"{me}: a masked vector was already sent and this one differs "
                    "(another update, weight or request); refusing to send a second"
                )
        else:
            self.state = self.state.model_copy(
                update={"stage": "consistency", "held_shares": held, "masked_sha256": digest}
            )
        return MaskedVector(client=me, data=data)

    def sign_survivors(
        self, request: ConsistencyRequest, *, sign: Signer | None = None
    ) -> SurvivorSignature:
        """Consistency check, first half: sign the survivor list (once, one list only).

        ``sign`` is the identity key given to :meth:`start`; without it the signature is
        empty and the check only pins this client to one list. Asked again with the same
        list (a retry), it signs it again; a different list is refused.

        Raises
        ------
        InvalidMessageError
            If the request is misaddressed, out of stage, or the list has unknown or
            repeated ids or leaves this client out.
        SecAggAbortedError
            If fewer than ``threshold`` of this client's neighbours are on the list, or
            it already signed a different list.
        """
        params, me = self.state.params, self.state.client
        survivors = tuple(sorted(request.survivors))
        signed = self.state.signed_survivors
        if signed is not None and request.recipient == me:
            if signed != survivors:
                raise SecAggAbortedError(
                    f"{me}: already signed a different survivor list; refusing a second"
                )
        else:
            self._expect("consistency", request.recipient)
            self._check_survivors(survivors)
            self.state = self.state.model_copy(
                update={"stage": "unmask", "signed_survivors": survivors}
            )
        statement = survivors_statement(params, survivors)
        return SurvivorSignature(client=me, signature=sign(statement) if sign else b"")

    def unmask(self, request: UnmaskRequest, *, verify: Verifier | None = None) -> RevealedShares:
        """Unmask: reveal survivors' self-mask shares and dropped clients' key shares.

        The survivors must be the list this client signed. With ``verify``, at least
        ``threshold`` of this client's neighbours on that list must have signed it
        (Bonawitz et al.'s consistency check): a server that tells clients different
        lists, to rebuild one client's self-mask seed from some and its neighbours' mask
        keys from others, is refused. Without ``verify`` nothing is checked across
        clients: the server is trusted to send everyone the same list.

        The same request may be asked again (a retry) and gets the same answer; any
        other request is refused.

        Raises
        ------
        InvalidMessageError
            If the request is misaddressed or out of stage, or the dropped list names
            ids outside the round.
        SecAggAbortedError
            If the survivors are not the list this client signed, the lists overlap,
            fewer than ``threshold`` neighbours' valid signatures come with it, or a
            different request was answered before.
        """
        self._expect("unmask", request.recipient)
        params, me, t = self.state.params, self.state.client, self.state.params.threshold
        survivors, dropped = set(request.survivors), set(request.dropped)
        if tuple(sorted(request.survivors)) != self.state.signed_survivors:
            raise SecAggAbortedError(
                f"{me}: the unmask request's survivors are not the list this client signed"
            )
        if survivors & dropped:
            both = ", ".join(sorted(survivors & dropped))
            raise SecAggAbortedError(f"{me}: asked for both secrets of {both}; refusing")
        strangers = dropped - set(params.clients)
        if strangers or len(dropped) != len(request.dropped):
            raise InvalidMessageError(
                f"{me}: dropped list has repeated ids or ids outside the round: {sorted(strangers)}"
            )
        if verify is not None:
            statement = survivors_statement(params, self.state.signed_survivors)
            valid = 0  # distinct signers: the keys of a dict
            for signer, signature in sorted(request.signatures.items()):
                if valid == t:
                    break
                if (
                    signer in survivors
                    and signer in self._neighbours
                    and signature
                    and verify(signer, statement, signature)
                ):
                    valid += 1
            _enough(valid, t, f"{me}: neighbours' valid signatures on the survivor list")
        fingerprint = hashlib.sha256(
            json.dumps([sorted(survivors), sorted(dropped)]).encode()
        ).digest()
        if self.state.answered_unmask and self.state.answered_unmask != fingerprint:
            raise SecAggAbortedError(
                f"{me}: already answered a different unmask request; refusing a second"
            )
        wanted: dict[str, Literal["self_mask", "key"]] = {}
        for owner in self.state.held_shares:
            if owner in survivors or owner in dropped:
                wanted[owner] = "self_mask" if owner in survivors else "key"
        self.state = self.state.model_copy(update={"answered_unmask": fingerprint})
        held = self.state.held_shares
        return RevealedShares(
            client=me,
            self_mask_shares={o: held[o][:16] for o, k in wanted.items() if k == "self_mask"},
            key_shares={o: held[o][16:] for o, k in wanted.items() if k == "key"},
        )

    def _check_survivors(self, survivors: tuple[str, ...]) -> None:
        """A survivor list this client can sign: known ids, once each, itself, t neighbours."""
        params, me = self.state.params, self.state.client
        strangers = set(survivors) - set(params.clients)
        if strangers or len(set(survivors)) != len(survivors):
            raise InvalidMessageError(
                f"{me}: survivor list has repeated ids or ids outside the round: "
                f"{sorted(strangers)}"
            )
        if me not in survivors:
            raise InvalidMessageError(f"{me}: the survivor list leaves this client out")
        alive = len(set(survivors) & set(self._neighbours))
        _enough(alive, params.threshold, f"{me}: neighbours among the survivors")

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
