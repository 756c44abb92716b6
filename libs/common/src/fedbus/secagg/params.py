"""The public parameters of one SecAgg+ round, shared by the server and every client."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedbus.secagg.errors import SecAggParamsError
from fedbus.secagg.graph import degree_problem

__all__ = ["MAX_BITS", "SecAggParams"]

MAX_BITS = 32
"""Widest modulus supported: masked vectors travel as uint32 (see :mod:`.arith`)."""


class SecAggParams(BaseModel):
    """Everything a participant must agree on before the round starts.

    Attributes
    ----------
    session
        A name unique to this round (e.g. ``"<job id>/<round>"``). Every key, seed and
        ciphertext is bound to it, so nothing from one round is valid in another.
    clients
        The selected clients' ids, unique; their order does not matter (they are kept
        sorted, so the same clients in any order give the same :attr:`digest`).
    neighbours
        The degree ``k`` of the neighbour graph, at least 2: each client masks with, and shares its
        secrets among, ``k`` others. ``len(clients) - 1`` gives the complete graph of
        Bonawitz et al. (2017); ``O(log n)`` is SecAgg+ (Bell et al., 2020).
    threshold
        ``t``: shares needed to rebuild a secret, at least 2. ``k/2 < t <= k``: more
        than half the neighbours, so that the two disjoint sets of neighbours the
        server would need to learn both a client's self-mask seed and its key cannot
        both reach ``t``.
    bits
        The modulus is ``2**bits``, 1 to 32.
    clipping_range
        ``c``: each coordinate is clipped to ``[-c, c]`` before quantization.
    dimension
        Length of the flat update vector.
    graph_seed
        Public randomness that places the clients on the neighbour graph.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    session: str = Field(min_length=1)
    clients: tuple[str, ...]
    neighbours: int
    threshold: int
    bits: int = 32
    clipping_range: float = Field(gt=0, allow_inf_nan=False)
    dimension: int = Field(gt=0)
    graph_seed: bytes = Field(min_length=16)

    @field_validator("clients")
    @classmethod
    def _sorted(cls, clients: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(clients))

    @model_validator(mode="after")
    def _check(self) -> Self:
        for problem in _problems(self):
            raise SecAggParamsError(problem)
        return self

    @property
    def modulus(self) -> int:
        """``2**bits``: every masked value lies in ``[0, modulus)``."""
        return 1 << self.bits

    @property
    def digest(self) -> bytes:
        """SHA-256 of the parameters' canonical JSON: what signed statements bind to."""
        return hashlib.sha256(self.model_dump_json().encode()).digest()

    @property
    def levels(self) -> int:
        """``q``: a client's coordinate is quantized to an integer in ``[0, q]``.

        ``q = (2**bits - 1) // n``, so the sum of any subset of the ``n`` clients stays
        below the modulus and the unmasked sum is the exact integer sum, not a residue.
        """
        return (self.modulus - 1) // len(self.clients)

    @classmethod
    def recommended(
        cls,
        *,
        session: str,
        clients: Sequence[str],
        dimension: int,
        clipping_range: float,
        graph_seed: bytes,
        bits: int = 32,
    ) -> SecAggParams:
        """Parameters with SecAgg+'s logarithmic degree and a majority threshold.

        ``k = min(n - 1, 2 * ceil(log2 n))`` (n = 50: 12; n = 100: 14) and
        ``t = k // 2 + 1`` (7 and 8): a dropped client is recovered while at least
        ``t`` of its ``k`` neighbours answer.
        """
        n = len(clients)
        degree = min(n - 1, 2 * math.ceil(math.log2(max(n, 2))))
        return cls(
            session=session,
            clients=tuple(clients),
            neighbours=degree,
            threshold=degree // 2 + 1,
            bits=bits,
            clipping_range=clipping_range,
            dimension=dimension,
            graph_seed=graph_seed,
        )


def _problems(p: SecAggParams) -> list[str]:
    """Each reason these parameters cannot run, in words (empty when they can)."""
    n, k, t = len(p.clients), p.neighbours, p.threshold
    problems = []
    if len(set(p.clients)) != n or any(not c for c in p.clients):
        problems.append("clients must be unique, non-empty ids")
    if n < 3:
        problems.append(f"secure aggregation needs at least 3 clients, got {n}")
    elif (problem := degree_problem(n, k)) is not None:
        problems.append(problem)
    if t < 2:
        problems.append(f"threshold must be at least 2 (one share would be the secret), got {t}")
    elif not (2 * t > k and t <= k):
        problems.append(
            f"threshold must be more than half the neighbours and at most all of them "
            f"({k // 2 + 1} to {k} for {k} neighbours), got {t}"
        )
    if not 1 <= p.bits <= MAX_BITS:
        problems.append(f"bits must be between 1 and {MAX_BITS}, got {p.bits}")
    elif n >= 1 and (p.modulus - 1) // n < 1:
        problems.append(f"2**{p.bits} is too small for the sum of {n} clients: raise bits")
    return problems
