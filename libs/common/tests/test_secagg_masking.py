"""What the server holds for one client looks uniform and is never that client's update."""

from __future__ import annotations

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from fedbus.secagg import SecAggClient, SecAggParams, SecAggServer, quantize

# A fair test of uniformity fails by chance with probability P_MIN; the masks come from
# the OS's randomness (as in production), so that is this test's false-alarm rate.
P_MIN = 1e-6


def masked_vector_of_first_client(
    update: np.ndarray, *, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """(what the server receives from site-0, that client's quantized update)."""
    params = SecAggParams(
        session="job/0",
        clients=tuple(f"site-{i}" for i in range(5)),
        neighbours=4,
        threshold=3,
        bits=bits,
        clipping_range=1.0,
        dimension=update.size,
        graph_seed=b"0123456789abcdef",
    )
    server = SecAggServer.start(params)
    clients = {}
    for c in params.clients:
        clients[c], keys = SecAggClient.start(params, c)
        server.receive_public_keys(keys)
    requests = {c: clients[c].share_keys(r) for c, r in server.share_keys_requests().items()}
    for message in requests.values():
        server.receive_encrypted_shares(message)
    request = server.collect_requests()["site-0"]
    masked = clients["site-0"].mask(request, update)
    rounding = clients["site-0"].state.rounding_rng()
    plain = quantize(update, clipping_range=1.0, levels=params.levels, rng=rounding)
    return np.frombuffer(masked.data, dtype="<u4"), plain


def test_a_32_bit_masked_vector_is_uniform_byte_by_byte_and_hides_the_update() -> None:
    update = np.zeros(1 << 16)  # the most structured update: one value everywhere

    masked, plain = masked_vector_of_first_client(update, bits=32)

    counts = np.bincount(masked.view(np.uint8), minlength=256)  # 262,144 bytes, 1,024 per bin
    assert stats.chisquare(counts).pvalue > P_MIN
    assert stats.kstest(masked / 2.0**32, "uniform").pvalue > P_MIN
    # each coordinate equals the update's with probability 2**-32: 3 or more is ~1e-15
    assert int((masked == plain).sum()) <= 2


def test_an_8_bit_masked_vector_is_uniform_and_matches_the_update_only_by_chance() -> None:
    update = np.linspace(-0.2, 0.2, 1 << 16)

    masked, plain = masked_vector_of_first_client(update, bits=8)

    assert int(masked.max()) < 256
    assert stats.chisquare(np.bincount(masked, minlength=256)).pvalue > P_MIN
    # equal coordinates: Binomial(65,536, 1/256), mean 256 and sd 16: 8 sd either side
    assert 128 <= int((masked == plain).sum()) <= 384


def test_the_uniformity_check_does_catch_an_unmasked_update() -> None:
    update = np.zeros(1 << 16)

    _, plain = masked_vector_of_first_client(update, bits=32)

    counts = np.bincount(plain.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue < P_MIN
