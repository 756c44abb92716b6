"""Benchmark: bytes per update of the compression codecs, against float32.

One update of the 1,658,634-parameter CNN layout of ``bench/aggregation_fedavg.py``
(normal values, sd 0.01), encoded by each codec of ``fedbus.compression``: the exact
bytes of the encoding, the ratio to raw float32 (4 bytes per parameter), CPU to encode
and decode (``time.process_time``, best of 3) and the relative L2 error of one decode
(for top-k that error is what the residual carries to the next round, not lost).
Accuracy after 20 rounds on the demo task is measured once the codecs are wired into jobs
(not yet: see docs/secagg.md).

    .venv/bin/python bench/compression.py
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from fedbus.compression import TopKCompressor, decode_quantized8, decode_topk, encode_quantized8

sys.path.insert(0, str(Path(__file__).parent))
from aggregation_fedavg import LAYOUT

T = TypeVar("T")


def best_of(call: Callable[[], T], repeats: int = 3) -> tuple[T, float]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.process_time()
        result = call()
        best = min(best, time.process_time() - start)
    assert result is not None
    return result, best


def main() -> None:
    rng = np.random.default_rng(0)
    update = {n: rng.normal(0, 0.01, s).astype(np.float32) for n, s in LAYOUT.items()}
    params = sum(a.size for a in update.values())
    raw = 4 * params
    flat = np.concatenate([a.ravel() for a in update.values()])
    codecs: list[tuple[str, Callable[[], bytes], Callable[..., dict[str, np.ndarray]]]] = [
        ("8-bit stochastic", lambda: encode_quantized8(update, rng=rng), decode_quantized8),
    ]
    for fraction in (0.1, 0.01):
        codecs.append(
            (
                f"top-{fraction:.0%} + EF",
                lambda f=fraction: TopKCompressor(fraction=f).encode(update),
                decode_topk,
            )
        )
    print(f"{params:,} parameters, float32 = {raw:,} bytes")
    print(
        f"{'codec':>16} {'bytes':>11} {'x float32':>10} {'encode ms':>10} {'decode ms':>10} "
        f"{'rel. L2 err':>12}"
    )
    for name, encode, decode in codecs:
        data, encode_s = best_of(encode)
        decoded, decode_s = best_of(lambda data=data, decode=decode: decode(data, shapes=LAYOUT))
        back = np.concatenate([decoded[n].ravel() for n in update])
        error = float(np.linalg.norm(back - flat) / np.linalg.norm(flat))
        print(
            f"{name:>16} {len(data):>11,} {len(data) / raw:>10.3f} {encode_s * 1e3:>10.1f} "
            f"{decode_s * 1e3:>10.1f} {error:>12.3f}"
        )


if __name__ == "__main__":
    main()
