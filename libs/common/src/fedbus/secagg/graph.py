"""The neighbour graph: who masks with whom, and who holds whose shares.

SecAgg+ (Bell et al., 2020, section 3) replaces Bonawitz et al.'s complete graph by a
random ``k``-regular graph. Here it is a Harary graph, the ``k``-regular ring, on the
clients placed in an order drawn from a public seed: each client is joined to the
``k/2`` clients on each side of it (and, for odd ``k`` and even ``n``, to the one
opposite). The order is ``HMAC-SHA256(seed, id)``, not a numpy generator, so every
participant computes the same graph on any platform and numpy version.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from fedbus.secagg.errors import SecAggParamsError

__all__ = ["degree_problem", "neighbour_graph"]


def degree_problem(n: int, degree: int) -> str | None:
    """Why no usable ``degree``-regular neighbour graph exists on ``n`` clients, or None.

    At least 2: with one neighbour the clients fall into pairs whose sums the server
    learns. The one check :class:`~fedbus.secagg.params.SecAggParams` and
    :func:`neighbour_graph` share.
    """
    if not 2 <= degree <= n - 1:
        return f"neighbours must be between 2 and n - 1 = {n - 1}, got {degree}"
    if degree < n - 1 and degree % 2 == 1 and n % 2 == 1:
        return f"no {degree}-regular graph on {n} clients: use an even degree"
    return None


def neighbour_graph(
    clients: Sequence[str], *, degree: int, seed: bytes
) -> dict[str, tuple[str, ...]]:
    """Each client's ``degree`` neighbours (sorted), from the public ``seed``.

    The graph is symmetric: ``v`` is ``u``'s neighbour exactly when ``u`` is ``v``'s.
    ``degree == len(clients) - 1`` gives the complete graph.

    Raises
    ------
    SecAggParamsError
        If no such graph exists or it would be unsafe (see :func:`degree_problem`).
    """
    n = len(clients)
    problem = degree_problem(n, degree)
    if problem is not None:
        raise SecAggParamsError(problem)
    ring = sorted(clients, key=lambda c: hmac.new(seed, c.encode(), hashlib.sha256).digest())
    links: dict[str, set[str]] = {c: set() for c in clients}
    offsets = range(1, n) if degree == n - 1 else range(1, degree // 2 + 1)
    for i, client in enumerate(ring):
        for step in offsets:
            links[client].add(ring[(i + step) % n])
            links[ring[(i + step) % n]].add(client)
        if degree % 2 == 1 and degree < n - 1:
            links[client].add(ring[(i + n // 2) % n])
    return {c: tuple(sorted(links[c])) for c in clients}
