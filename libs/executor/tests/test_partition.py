"""Partitions are deterministic, disjoint and complete; Dirichlet is skewed, IID is not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus_executor import dirichlet_partition, iid_partition, label_histogram

LABELS = np.repeat(np.arange(10, dtype=np.int64), 100)


def _is_exact_cover(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return len(joined) == n and set(joined.tolist()) == set(range(n))


@given(n=st.integers(10, 500), clients=st.integers(1, 10), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_iid_is_an_exact_near_equal_cover(n: int, clients: int, seed: int) -> None:
    parts = iid_partition(n=n, num_clients=clients, seed=seed)
    assert _is_exact_cover(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@given(alpha=st.floats(0.05, 100.0), clients=st.integers(2, 8), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_dirichlet_is_an_exact_cover(alpha: float, clients: int, seed: int) -> None:
    parts = dirichlet_partition(labels=LABELS, num_clients=clients, alpha=alpha, seed=seed)
    assert _is_exact_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 1


def test_same_seed_same_split_other_seed_other_split() -> None:
    a = dirichlet_partition(labels=LABELS, num_clients=4, alpha=0.5, seed=7)
    b = dirichlet_partition(labels=LABELS, num_clients=4, alpha=0.5, seed=7)
    c = dirichlet_partition(labels=LABELS, num_clients=4, alpha=0.5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _mean_dominant_share(parts: list[np.ndarray]) -> float:
    shares = []
    for p in parts:
        hist = label_histogram(LABELS[p], num_classes=10)
        shares.append(max(hist) / sum(hist))
    return float(np.mean(shares))


def test_small_alpha_skews_labels_iid_does_not() -> None:
    skewed = dirichlet_partition(labels=LABELS, num_clients=5, alpha=0.1, seed=0)
    iid = iid_partition(n=len(LABELS), num_clients=5, seed=0)
    # IID clients see each class ~10% of the time; alpha=0.1 concentrates them.
    assert _mean_dominant_share(iid) < 0.2
    assert _mean_dominant_share(skewed) > 0.4
