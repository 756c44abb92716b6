"""Split example indices into client partitions: IID, or non-IID by a Dirichlet prior."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["dirichlet_partition", "iid_partition", "label_histogram", "train_test_split"]

IndexArray = npt.NDArray[np.int64]


def train_test_split(*, n: int, test_fraction: float, seed: int) -> tuple[IndexArray, IndexArray]:
    """Shuffle ``range(n)`` with ``seed`` and cut off the test share.

    Returns
    -------
    tuple
        ``(train_indices, test_indices)``, disjoint, covering ``range(n)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_test = max(1, round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def iid_partition(*, n: int, num_clients: int, seed: int) -> list[IndexArray]:
    """Deal a random permutation of ``range(n)`` into ``num_clients`` near-equal parts."""
    _check_clients(num_clients, n)
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_partition(
    *,
    labels: npt.NDArray[np.int64],
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 1,
) -> list[IndexArray]:
    """Non-IID split: each class is shared among clients by proportions ~ Dir(alpha).

    Small ``alpha`` gives each client few classes; large ``alpha`` approaches IID.
    Draws are repeated (same generator, so still deterministic) until every client
    holds at least ``min_size`` examples, as in Hsu et al. 2019, "Measuring the
    Effects of Non-Identical Data Distribution for Federated Visual Classification".
    """
    _check_clients(num_clients, len(labels))
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts = _dirichlet_draw(labels, num_clients, alpha, rng)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise ValueError(
        f"could not give {num_clients} clients >= {min_size} examples with alpha={alpha}"
    )


def _dirichlet_draw(
    labels: npt.NDArray[np.int64], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[IndexArray]:
    buckets: list[list[IndexArray]] = [[] for _ in range(num_clients)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls)).astype(np.int64)
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            buckets[client].append(chunk)
    return [np.sort(np.concatenate(b)) for b in buckets]


def label_histogram(labels: npt.NDArray[np.int64], *, num_classes: int) -> list[int]:
    """Count of each class label, ``num_classes`` long."""
    return [int(c) for c in np.bincount(labels, minlength=num_classes)]


def _check_clients(num_clients: int, n: int) -> None:
    if not 1 <= num_clients <= n:
        raise ValueError(f"num_clients must be in [1, {n}], got {num_clients}")
