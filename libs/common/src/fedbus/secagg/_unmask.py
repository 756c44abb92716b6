"""Removing the masks from the running sum: rebuild secrets from shares, check them.

For each survivor ``u`` the self mask ``PRG(b_u)`` comes off; for each dropped client
``v`` that a survivor ``u`` masked with, the pairwise mask ``+-PRG(s_uv)`` that ``u`` added
comes off (``s_uv`` from ``v``'s rebuilt key and ``u``'s public key). The masks between
two survivors cancel in the sum by themselves. Each rebuilt secret is checked against
what its owner published before (the seed's commitment, the key's public key); when
more than ``t`` shares were revealed and the first ``t`` fail the check (a revealer
altered its share), other ``t``-subsets are tried, up to :data:`MAX_TRIES`. The result
is checked against its range. Any mismatch left aborts the round rather than release a
wrong or partly masked sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from fedbus.secagg import primitives as p
from fedbus.secagg.arith import reduce_mod
from fedbus.secagg.client import self_mask_commitment
from fedbus.secagg.errors import SecAggAbortedError

if TYPE_CHECKING:
    from fedbus.secagg.server import ServerState

__all__ = ["MAX_TRIES", "unmask_sum"]

MAX_TRIES = 64
"""Most ``t``-subsets of one secret's revealed shares tried before aborting.

Subsets leave out the lowest-indexed shares first, then each other one: a single
altered share among ``m > t`` is left out within ``m`` tries (``m <= k``, so always
for up to 64 neighbours).
"""


def unmask_sum(
    state: ServerState,
    total: npt.NDArray[np.uint32],
    *,
    graph: dict[str, tuple[str, ...]],
    mask_peers: dict[str, set[str]],
    survivors: tuple[str, ...],
    dropped: tuple[str, ...],
) -> npt.NDArray[np.uint32]:
    """The unmasked sum of the survivors' vectors (``total`` is consumed)."""
    params = state.params
    size = params.dimension
    for owner in survivors:
        expected = state.shares[owner].self_mask_commitment

        def committed(seed: bytes, owner: str = owner, expected: bytes = expected) -> bool:
            return self_mask_commitment(seed, session=params.session, client=owner) == expected

        seed = _rebuild(state, graph, owner, "self_mask", committed)
        np.subtract(total, p.expand_mask(seed, size), out=total)
    for gone in dropped:
        partners = [u for u in survivors if gone in mask_peers[u]]
        if not partners:
            continue  # no survivor masked with it: nothing to remove, nothing to reveal
        advertised = state.public_keys[gone].mask_key

        def published(seed: bytes, advertised: bytes = advertised) -> bool:
            return p.public_key(p.private_key_from_seed(seed)) == advertised

        key = p.private_key_from_seed(_rebuild(state, graph, gone, "key", published))
        for u in partners:
            seed = p.pairwise_seed(
                key, state.public_keys[u].mask_key, session=params.session, a=u, b=gone
            )
            op = np.subtract if u < gone else np.add  # undo what u added
            op(total, p.expand_mask(seed, size), out=total)
    reduce_mod(total, bits=params.bits)
    ceiling = len(survivors) * params.levels
    if total.size and int(total.max()) > ceiling:
        raise SecAggAbortedError(
            f"the unmasked sum exceeds {ceiling} = survivors x levels: a mask was not removed"
        )
    return total


def _rebuild(
    state: ServerState,
    graph: dict[str, tuple[str, ...]],
    owner: str,
    kind: Literal["self_mask", "key"],
    check: Callable[[bytes], bool],
) -> bytes:
    """The secret ``owner`` shared: the first ``threshold`` revealed shares that pass."""
    holders = graph[owner]
    shares = {}
    for revealer, message in state.revealed.items():
        found = (message.self_mask_shares if kind == "self_mask" else message.key_shares).get(owner)
        if found is not None:
            shares[holders.index(revealer) + 1] = found
    threshold = state.params.threshold
    what = "self-mask seed" if kind == "self_mask" else "mask key"
    if len(shares) < threshold:
        raise SecAggAbortedError(
            f"cannot rebuild {owner}'s {what}: {len(shares)} shares revealed, threshold {threshold}"
        )
    indices = sorted(shares)
    subsets = itertools.combinations(indices, len(indices) - threshold)  # what is left out
    for left_out in itertools.islice(subsets, MAX_TRIES):
        secret = p.combine_secret({i: shares[i] for i in indices if i not in left_out})
        if check(secret):
            return secret
    raise SecAggAbortedError(
        f"the shares of {owner}'s {what} are inconsistent: no {threshold} of the "
        f"{len(indices)} revealed rebuild the published value (altered shares)"
    )
