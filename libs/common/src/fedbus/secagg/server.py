"""The server side of SecAgg+: it routes messages and learns only the sum.

The server never sees a client's update: it forwards encrypted shares it cannot read,
adds masked vectors as they arrive (one running uint32 sum, no vector kept), and after
the upload deadline sends every survivor the same survivor list to sign (the
consistency check), then asks the signers for exactly the shares that remove the masks:
each survivor's self mask, and each dropped client's pairwise masks with survivors.

Every stage closes explicitly (``share_keys_requests``, ``collect_requests``,
``consistency_requests``, ``unmask_requests``, ``finish``): the service calls them at its
deadlines. The state is a :class:`ServerState` (JSON-serializable) so an aggregator can
resume after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

from fedbus.secagg import primitives as p
from fedbus.secagg._unmask import unmask_sum
from fedbus.secagg.arith import dequantize_sum
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
)
from fedbus.secagg.params import SecAggParams

__all__ = ["SecAggResult", "SecAggServer", "ServerState"]

ServerStage = Literal["setup", "share_keys", "collect", "consistency", "unmask", "done"]


class ServerState(BaseModel):
    """Everything the server must remember between stages (no client secret)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    params: SecAggParams
    stage: ServerStage = "setup"
    public_keys: dict[str, PublicKeys] = {}
    shares: dict[str, EncryptedShares] = {}
    uploaded: list[str] = []
    masked_sum: bytes = b""
    """The running sum of the masked vectors received, little-endian uint32."""
    signatures: dict[str, bytes] = {}
    """Each survivor's signature over the survivor list (empty bytes when unsigned)."""
    revealed: dict[str, RevealedShares] = {}

    @model_validator(mode="after")
    def _check_sum(self) -> Self:
        expected = 4 * self.params.dimension
        if self.masked_sum and len(self.masked_sum) != expected:
            raise InvalidMessageError(
                f"server state: masked_sum has {len(self.masked_sum)} bytes, expected "
                f"{expected} (4 x dimension)"
            )
        return self


@dataclass(frozen=True)
class SecAggResult:
    """What the round reveals: the sum of the survivors' quantized updates, and who."""

    total: npt.NDArray[np.uint32]
    """The exact integer sum of the survivors' quantized vectors."""
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    params: SecAggParams

    def float_sum(self) -> npt.NDArray[np.float64]:
        """The sum of the survivors' clipped updates, dequantized."""
        return dequantize_sum(
            self.total,
            count=len(self.survivors),
            clipping_range=self.params.clipping_range,
            levels=self.params.levels,
        )


class SecAggServer:
    """The server's run through the four stages of one round."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.graph = neighbour_graph(
            state.params.clients, degree=state.params.neighbours, seed=state.params.graph_seed
        )
        size = state.params.dimension
        self._sum = (
            np.frombuffer(state.masked_sum, dtype="<u4").astype(np.uint32)
            if state.masked_sum
            else np.zeros(size, np.uint32)
        )

    @classmethod
    def start(cls, params: SecAggParams) -> SecAggServer:
        """A server in the setup stage: it waits for the clients' public keys."""
        return cls(ServerState(params=params))

    def snapshot(self) -> ServerState:
        """A copy of the state with the running sum, to persist.

        Deep: the server goes on changing its own lists and dicts, and a snapshot that
        shared them would list a later upload that its ``masked_sum`` does not hold.
        """
        return self.state.model_copy(
            update={"masked_sum": self._sum.astype("<u4").tobytes()}, deep=True
        )

    # --- setup -------------------------------------------------------------------
    def receive_public_keys(self, message: PublicKeys) -> None:
        """Keep a client's advertised keys (a repeat of the same keys is ignored).

        Raises
        ------
        InvalidMessageError
            If the client advertised other keys before, its two keys are equal, or one
            is of small order (no agreement with it would be secret).
        """
        self._expect("setup", message.client)
        known = self.state.public_keys.get(message.client)
        if known is not None and known != message:
            raise InvalidMessageError(f"{message.client} advertised different keys twice")
        if message.mask_key == message.share_key:
            raise InvalidMessageError(f"{message.client}: its two public keys are the same")
        p.check_public_key(message.mask_key, owner=message.client, what="mask key")
        p.check_public_key(message.share_key, owner=message.client, what="share key")
        self.state.public_keys[message.client] = message

    def share_keys_requests(self) -> dict[str, ShareKeysRequest]:
        """Close setup: each advertiser gets its advertising neighbours' keys."""
        self._close(
            "setup", "share_keys", len(self.state.public_keys), "clients that advertised keys"
        )
        keys = self.state.public_keys
        return {
            c: ShareKeysRequest(
                recipient=c, public_keys={v: keys[v] for v in self.graph[c] if v in keys}
            )
            for c in sorted(keys)
        }

    # --- share keys --------------------------------------------------------------
    def receive_encrypted_shares(self, message: EncryptedShares) -> None:
        """Keep a client's ciphertexts: one for each neighbour that advertised keys.

        A client that left out a neighbour would not be masked with it while that
        neighbour, holding the client's other shares, is: their pairwise masks would not
        cancel and the sum would be wrong.
        """
        client = message.client
        self._expect("share_keys", client)
        if client not in self.state.public_keys:
            raise InvalidMessageError(f"{client} sent shares without advertising keys")
        strangers = set(message.ciphertexts) - set(self.graph[client])
        if strangers:
            raise InvalidMessageError(f"{client} sent shares to non-neighbours {sorted(strangers)}")
        missing = {v for v in self.graph[client] if v in self.state.public_keys} - set(
            message.ciphertexts
        )
        if missing:
            raise InvalidMessageError(
                f"{client} sent no shares to its neighbours {sorted(missing)}, who advertised keys"
            )
        self.state.shares[client] = message

    def collect_requests(self) -> dict[str, CollectRequest]:
        """Close share keys: each sharer gets the ciphertexts addressed to it."""
        self._close("share_keys", "collect", len(self.state.shares), "clients that shared keys")
        return {
            c: CollectRequest(recipient=c, ciphertexts=self._mask_peers(c))
            for c in sorted(self.state.shares)
        }

    def _mask_peers(self, client: str) -> dict[str, bytes]:
        """Ciphertexts to ``client`` from sharers: it masks with exactly these senders."""
        out = {}
        for sender in self.graph[client]:
            sent = self.state.shares.get(sender)
            if sent is not None and client in sent.ciphertexts:
                out[sender] = sent.ciphertexts[client]
        return out

    # --- collect masked vectors --------------------------------------------------
    def receive_masked_vector(self, message: MaskedVector) -> None:
        """Add a sharer's masked vector to the running sum (once per client)."""
        client, params = message.client, self.state.params
        self._expect("collect", client)
        if client not in self.state.shares or client in self.state.uploaded:
            raise InvalidMessageError(
                f"{client}: masked vector not expected (no shares, or a repeat)"
            )
        if len(message.data) != 4 * params.dimension:
            raise InvalidMessageError(
                f"{client}: masked vector has {len(message.data)} bytes, "
                f"expected {4 * params.dimension}"
            )
        vector = np.frombuffer(message.data, dtype="<u4")
        if params.bits < 32 and int(vector.max()) >= params.modulus:
            raise InvalidMessageError(
                f"{client}: masked vector has values of 2**{params.bits} or more"
            )
        np.add(self._sum, vector, out=self._sum)
        self.state.uploaded.append(client)

    def consistency_requests(self) -> dict[str, ConsistencyRequest]:
        """Close the upload: send every uploader the same survivor list to sign."""
        self._close(
            "collect",
            "consistency",
            len(self.state.uploaded),
            "clients that uploaded masked vectors",
        )
        survivors = tuple(sorted(self.state.uploaded))
        return {c: ConsistencyRequest(recipient=c, survivors=survivors) for c in survivors}

    # --- consistency check -------------------------------------------------------
    def receive_survivor_signature(self, message: SurvivorSignature) -> None:
        """Keep a survivor's signature over the list (to forward; clients verify it)."""
        client = message.client
        self._expect("consistency", client)
        if client not in self.state.uploaded:
            raise InvalidMessageError(f"{client} did not upload and was not asked to sign")
        known = self.state.signatures.get(client)
        if known is not None and known != message.signature:
            raise InvalidMessageError(f"{client} sent two different survivor signatures")
        self.state.signatures[client] = message.signature

    def unmask_requests(self) -> dict[str, UnmaskRequest]:
        """Close the check: ask every signer for the shares that remove the masks.

        Each request carries the same survivors and dropped clients, and the signatures
        of the recipient's neighbours (the only ones it counts).
        """
        self._close(
            "consistency",
            "unmask",
            len(self.state.signatures),
            "survivors that signed the survivor list",
        )
        survivors = tuple(sorted(self.state.uploaded))
        dropped = tuple(sorted(set(self.state.shares) - set(survivors)))
        signatures = dict(sorted(self.state.signatures.items()))
        return {
            c: UnmaskRequest(
                recipient=c,
                survivors=survivors,
                dropped=dropped,
                signatures={v: signatures[v] for v in self.graph[c] if v in signatures},
            )
            for c in sorted(signatures)
        }

    # --- unmask ------------------------------------------------------------------
    def receive_revealed_shares(self, message: RevealedShares) -> None:
        """Keep a survivor's revealed shares after checking they were asked for.

        A repeat of the same message is ignored; a second, different one is refused
        (the first is kept).
        """
        client = message.client
        self._expect("unmask", client)
        if client not in self.state.signatures:
            raise InvalidMessageError(
                f"{client} did not sign the survivor list and was not asked for shares"
            )
        known = self.state.revealed.get(client)
        if known is not None and known != message:
            raise InvalidMessageError(f"{client} sent two different sets of revealed shares")
        survivors = set(self.state.uploaded)
        for owner, share in {**message.self_mask_shares, **message.key_shares}.items():
            sent = self.state.shares.get(owner)
            if sent is None or client not in sent.ciphertexts or len(share) != p.SEED_BYTES:
                raise InvalidMessageError(f"{client}: revealed a share of {owner} it cannot hold")
        if set(message.self_mask_shares) - survivors or set(message.key_shares) & survivors:
            raise InvalidMessageError(
                f"{client}: self-mask shares must be of survivors, key shares of dropped clients"
            )
        self.state.revealed[client] = message

    def finish(self) -> SecAggResult:
        """Remove the masks and return the sum; or fail closed, saying why.

        Raises
        ------
        SecAggAbortedError
            If a secret has fewer than ``threshold`` shares revealed, a rebuilt secret
            does not match its commitment or public key (a share was altered), or the
            unmasked sum is out of range (a mask was not removed).
        """
        if self.state.stage != "unmask":
            raise InvalidMessageError(f"finish called in stage {self.state.stage}")
        survivors = tuple(sorted(self.state.uploaded))
        dropped = tuple(sorted(set(self.state.shares) - set(survivors)))
        total = unmask_sum(
            self.state,
            self._sum.copy(),
            graph=self.graph,
            mask_peers={c: set(self._mask_peers(c)) for c in survivors},
            survivors=survivors,
            dropped=dropped,
        )
        self.state = self.state.model_copy(update={"stage": "done"})
        return SecAggResult(
            total=total, survivors=survivors, dropped=dropped, params=self.state.params
        )

    def _expect(self, stage: ServerStage, client: str) -> None:
        if client not in self.graph:
            raise InvalidMessageError(f"{client} is not among the round's clients")
        if self.state.stage != stage:
            raise InvalidMessageError(
                f"{client}: {stage} message arrived in stage {self.state.stage}"
            )

    def _close(self, stage: ServerStage, following: ServerStage, count: int, what: str) -> None:
        if self.state.stage != stage:
            raise InvalidMessageError(
                f"cannot close stage {stage}: the server is in {self.state.stage}"
            )
        threshold = self.state.params.threshold
        if count < threshold:
            self.state = self.state.model_copy(update={"stage": "done"})
            raise SecAggAbortedError(f"{what}: {count}, fewer than the threshold {threshold}")
        self.state = self.state.model_copy(update={"stage": following})
