"""Benchmark: streaming FedAvg of 100 updates of ~1.66M float32 parameters.

Goal: <= 50 ms per aggregation. FedAvg must read every byte of every update once,
so its speed is bounded by memory bandwidth; the script measures, in the same run,
a numpy memory-copy baseline over the same updates (reading each into one reused
buffer, the same access pattern) and reports both in GB/s.

The accumulator sums in int64 fixed point so that any arrival order gives the same bytes
(``fedbus.aggregation.fixed_point``): per element it reads the float32 value and reads and
writes an int64 sum (twice the bytes of a float32 sum), with one thread per core on large
tensors. The float32 BLAS ``axpy`` accumulator it replaced (order-dependent, scipy's
multithreaded saxpy) runs beside it for comparison. On the 2-core development machine the
fixed-point accumulator takes about 125 ms, over the 50 ms goal; the axpy path about 25 ms.

Run from the repository root:

    .venv/bin/python bench/aggregation_fedavg.py [--clients 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy.linalg.blas import saxpy  # type: ignore[import-untyped]

from fedbus.aggregation import ClientUpdate, FedAvg, FedAvgAccumulator

# A small CNN-like layout: 1,658,634 float32 parameters (~6.6 MB per update).
LAYOUT: dict[str, tuple[int, ...]] = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "fc1.weight": (128, 12800),
    "fc1.bias": (128,),
    "fc2.weight": (10, 128),
    "fc2.bias": (10,),
}


def make_updates(clients: int, seed: int) -> list[ClientUpdate]:
    """Random deltas with random sample counts."""
    rng = np.random.default_rng(seed)
    return [
        ClientUpdate(
            client_id=f"client-{i}",
            delta={n: rng.standard_normal(s, dtype=np.float32) for n, s in LAYOUT.items()},
            num_samples=int(rng.integers(100, 10_000)),
        )
        for i in range(clients)
    ]


def timed(run: Callable[[], object], repeats: int) -> list[float]:
    """Wall times in seconds of ``repeats`` runs after one warm-up run."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def fedavg_stream(updates: list[ClientUpdate]) -> None:
    accumulator = FedAvgAccumulator()
    for update in updates:
        accumulator.add(update)
    accumulator.result()


def float_axpy_stream(updates: list[ClientUpdate]) -> None:
    """The previous accumulator: ``sum += n * delta`` in float32 with BLAS, arrival order."""
    sums = {n: np.zeros(s, dtype=np.float32) for n, s in LAYOUT.items()}
    for update in updates:
        for name, array in update.delta.items():
            saxpy(array.reshape(-1), sums[name].reshape(-1), a=float(update.num_samples))
    total = sum(u.num_samples for u in updates)
    for array in sums.values():
        array *= np.float32(1.0 / total)


def copy_baseline(updates: list[ClientUpdate]) -> None:
    buffers = {n: np.empty(s, dtype=np.float32) for n, s in LAYOUT.items()}
    for update in updates:
        for name, array in update.delta.items():
            np.copyto(buffers[name], array)


def unweighted_sum(updates: list[ClientUpdate]) -> None:
    sums = {n: np.zeros(s, dtype=np.float32) for n, s in LAYOUT.items()}
    for update in updates:
        for name, array in update.delta.items():
            sums[name] += array


def report(label: str, times: list[float], nbytes: int) -> None:
    best, median = min(times), statistics.median(times)
    print(
        f"{label:<38} best {best * 1e3:8.1f} ms  median {median * 1e3:8.1f} ms  "
        f"{nbytes / best / 1e9:6.2f} GB/s (best)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    params = sum(math.prod(shape) for shape in LAYOUT.values())
    updates = make_updates(args.clients, seed=0)
    global_model = {n: np.zeros(s, dtype=np.float32) for n, s in LAYOUT.items()}
    nbytes = args.clients * params * 4
    print(f"{args.clients} updates x {params:,} float32 parameters = {nbytes / 1e6:.0f} MB read")

    report(
        "numpy copy baseline (read each update)",
        timed(lambda: copy_baseline(updates), args.repeats),
        nbytes,
    )
    report(
        "numpy unweighted sum (acc += x)",
        timed(lambda: unweighted_sum(updates), args.repeats),
        nbytes,
    )
    report(
        "float32 BLAS axpy (previous, ordered)",
        timed(lambda: float_axpy_stream(updates), args.repeats),
        nbytes,
    )
    report(
        "FedAvgAccumulator add x N + result",
        timed(lambda: fedavg_stream(updates), args.repeats),
        nbytes,
    )
    aggregate = FedAvg().aggregate
    report(
        "FedAvg.aggregate (incl. new model)",
        timed(lambda: aggregate(global_model=global_model, updates=updates), args.repeats),
        nbytes,
    )
    print("goal: <= 50 ms per aggregation of 100 updates")


if __name__ == "__main__":
    main()
