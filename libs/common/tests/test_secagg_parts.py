"""SecAgg+ pieces: parameters, the neighbour graph, primitives, quantization, resuming."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fedbus.events import Strategy
from fedbus.secagg import (
    WORKS_ON_THE_SUM,
    ClientState,
    InvalidMessageError,
    Layout,
    MaskedVector,
    SecAggClient,
    SecAggParams,
    SecAggParamsError,
    SecAggServer,
    ServerState,
    neighbour_graph,
    quantize,
    strategy_problem,
)
from fedbus.secagg import primitives as p
from fedbus.secagg.arith import dequantize_sum

SEED = b"a public seed of sixteen+ bytes"


def params(n: int = 6, k: int = 5, t: int = 3, bits: int = 32, d: int = 16) -> SecAggParams:
    clients = tuple(f"c{i}" for i in range(n))
    return SecAggParams(
        session="s", clients=clients, neighbours=k, threshold=t, bits=bits,
        clipping_range=0.5, dimension=d, graph_seed=SEED,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (
            {"k": 5, "t": 2},
            "threshold must be more than half the neighbours and at most all of them "
            "(3 to 5 for 5 neighbours), got 2",
        ),
        ({"k": 5, "t": 6}, "(3 to 5 for 5 neighbours), got 6"),
        ({"k": 6, "t": 4}, "neighbours must be between 2 and n - 1 = 5, got 6"),
        # one neighbour splits the clients into pairs whose sums the server learns
        ({"k": 1, "t": 1}, "neighbours must be between 2 and n - 1 = 5, got 1"),
        # with one share needed, each share is the secret itself
        ({"k": 2, "t": 1}, "threshold must be at least 2 (one share would be the secret), got 1"),
        ({"n": 7, "k": 3, "t": 2}, "no 3-regular graph on 7 clients: use an even degree"),
        ({"n": 2, "k": 1, "t": 1}, "secure aggregation needs at least 3 clients, got 2"),
        (
            {"n": 9, "k": 8, "t": 5, "bits": 3},
            "2**3 is too small for the sum of 9 clients: raise bits",
        ),
        ({"bits": 33}, "bits must be between 1 and 32, got 33"),
    ],
)
def test_parameters_that_cannot_work_are_refused_with_the_reason(
    kwargs: dict[str, int], reason: str
) -> None:
    with pytest.raises(SecAggParamsError) as caught:
        params(**kwargs)
    assert reason in caught.value.reason


def test_the_order_of_the_clients_does_not_change_the_parameters_or_their_digest() -> None:
    forward = params()
    backward = forward.model_validate({**forward.model_dump(), "clients": forward.clients[::-1]})

    assert backward.digest == forward.digest
    assert backward == forward
    assert backward.clients == tuple(sorted(forward.clients))


def test_a_negative_clipping_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="clipping_range"):
        params().model_copy(update={}).model_validate(
            {**params().model_dump(), "clipping_range": -1.0}
        )


def test_recommended_parameters_are_logarithmic_with_a_majority_threshold() -> None:
    for n, k, t in ((10, 8, 5), (50, 12, 7), (100, 14, 8), (5, 4, 3)):
        chosen = SecAggParams.recommended(
            session="s",
            clients=[str(i) for i in range(n)],
            dimension=1,
            clipping_range=1,
            graph_seed=SEED,
        )
        assert (chosen.neighbours, chosen.threshold) == (k, t)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 40), k=st.integers(1, 39), seed=st.binary(min_size=16, max_size=16))
def test_the_graph_is_symmetric_k_regular_and_the_same_for_everyone(
    n: int, k: int, seed: bytes
) -> None:
    clients = [f"client-{i}" for i in range(n)]
    if k < 2 or k > n - 1 or (k < n - 1 and k % 2 == 1 and n % 2 == 1):
        with pytest.raises(SecAggParamsError):
            neighbour_graph(clients, degree=k, seed=seed)
        return

    graph = neighbour_graph(clients, degree=k, seed=seed)

    assert all(len(graph[c]) == k and c not in graph[c] for c in clients)
    assert all(u in graph[v] for u in clients for v in graph[u])
    assert graph == neighbour_graph(list(reversed(clients)), degree=k, seed=seed)


def test_the_graph_refuses_the_degrees_the_parameters_refuse_with_the_same_reason() -> None:
    for n, k in ((6, 1), (7, 3), (6, 6)):
        with pytest.raises(SecAggParamsError) as from_params:
            params(n=n, k=k, t=k)
        with pytest.raises(SecAggParamsError) as from_graph:
            neighbour_graph([f"c{i}" for i in range(n)], degree=k, seed=SEED)
        assert from_graph.value.reason in from_params.value.reason


def test_the_seed_places_the_clients() -> None:
    clients = [f"client-{i}" for i in range(30)]
    first = neighbour_graph(clients, degree=4, seed=b"A" * 16)
    assert first != neighbour_graph(clients, degree=4, seed=b"B" * 16)
    assert neighbour_graph(clients, degree=29, seed=b"A" * 16)["client-0"] == tuple(
        sorted(clients[1:])
    )


def test_any_threshold_of_shares_rebuilds_a_128_bit_secret_and_fewer_do_not() -> None:
    secret = bytes(range(16))
    shares = p.split_secret(secret, threshold=3, shares=5)

    assert all(len(s) == 16 for s in shares)
    for chosen in itertools.combinations(range(5), 3):
        assert p.combine_secret({i + 1: shares[i] for i in chosen}) == secret
    assert p.combine_secret({1: shares[0], 2: shares[1]}) != secret


def test_pairwise_seeds_agree_from_both_sides_and_differ_per_session_and_pair() -> None:
    a, b, c = p.new_private_key(), p.new_private_key(), p.new_private_key()
    ab = p.pairwise_seed(a, p.public_key(b), session="s", a="x", b="y")

    assert ab == p.pairwise_seed(b, p.public_key(a), session="s", a="y", b="x")
    assert ab != p.pairwise_seed(a, p.public_key(b), session="t", a="x", b="y")
    assert ab != p.pairwise_seed(a, p.public_key(c), session="s", a="x", b="y")


def test_the_mask_is_the_aes_ctr_keystream_of_its_seed() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    seed = bytes(range(32))
    block = Cipher(algorithms.AES(seed), modes.ECB()).encryptor().update(bytes(16))  # counter 0

    assert p.expand_mask(seed, 4).astype("<u4").tobytes() == block
    assert p.expand_mask(seed, 1000)[:4].tolist() == p.expand_mask(seed, 4).tolist()


def test_quantization_is_unbiased_clipped_and_dequantizes_with_the_offset() -> None:
    values = np.array([-3.0, -0.5, -0.1234, 0.0, 0.3141, 0.5, 9.0])
    levels, c = 1000, 0.5
    draws = np.stack(
        [
            quantize(values, clipping_range=c, levels=levels, rng=np.random.default_rng(s))
            for s in range(4000)
        ]
    )

    assert draws.min() >= 0
    assert draws.max() <= levels
    mean = (
        dequantize_sum(
            draws.sum(axis=0, dtype=np.uint64).astype(np.uint32),
            count=4000,
            clipping_range=c,
            levels=levels,
        )
        / 4000
    )
    step = 2 * c / levels
    # per-coordinate rounding sd <= step/2, so the mean of 4,000 draws is within 6 sd of the truth
    assert np.abs(mean - np.clip(values, -c, c)).max() <= 6 * (step / 2) / np.sqrt(4000)


def test_non_finite_updates_are_refused_by_the_client() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(
            np.array([0.0, np.nan]), clipping_range=1.0, levels=10, rng=np.random.default_rng()
        )


def after_share_keys(
    setup: SecAggParams, members: tuple[str, ...] | None = None
) -> tuple[SecAggServer, dict[str, SecAggClient]]:
    """A round through share keys, with ``members`` (default: every client) taking part."""
    server = SecAggServer.start(setup)
    clients = {}
    for c in setup.clients if members is None else members:
        clients[c], keys = SecAggClient.start(setup, c)
        server.receive_public_keys(keys)
    for c, keys_request in server.share_keys_requests().items():
        server.receive_encrypted_shares(clients[c].share_keys(keys_request))
    return server, clients


def test_client_and_server_resume_from_their_serialized_state() -> None:
    setup = params(n=5, k=4, t=3, d=8)
    server, clients = after_share_keys(setup)
    collect = server.collect_requests()
    server.receive_masked_vector(clients["c0"].mask(collect["c0"], np.full(8, 0.25)))

    # both sides restart: everything comes back from JSON
    server = SecAggServer(ServerState.model_validate_json(server.snapshot().model_dump_json()))
    clients = {
        c: SecAggClient(ClientState.model_validate_json(k.state.model_dump_json()))
        for c, k in clients.items()
    }
    for c in setup.clients[1:]:
        server.receive_masked_vector(clients[c].mask(collect[c], np.full(8, 0.25)))
    for c, consistency in server.consistency_requests().items():
        server.receive_survivor_signature(clients[c].sign_survivors(consistency))
    for c, unmask_request in server.unmask_requests().items():
        server.receive_revealed_shares(clients[c].unmask(unmask_request))
    result = server.finish()

    assert np.abs(result.float_sum() - 5 * 0.25).max() <= 5 * 2 * 0.5 / setup.levels


def test_a_restored_server_state_with_a_running_sum_of_another_length_is_refused() -> None:
    setup = params(n=5, k=4, t=3, d=8)
    server, clients = after_share_keys(setup)
    collect = server.collect_requests()
    server.receive_masked_vector(clients["c0"].mask(collect["c0"], np.zeros(8)))
    saved = server.snapshot()

    short = saved.model_copy(update={"masked_sum": saved.masked_sum[:-4]}).model_dump_json()
    with pytest.raises(InvalidMessageError, match="masked_sum has 28 bytes, expected 32"):
        ServerState.model_validate_json(short)
    assert ServerState.model_validate_json(saved.model_dump_json()) == saved


def test_the_server_refuses_late_repeated_foreign_and_malformed_vectors() -> None:
    setup = params(n=4, k=3, t=2, bits=16, d=8)
    server, clients = after_share_keys(setup, setup.clients[:3])
    collect = server.collect_requests()
    first = clients["c0"].mask(collect["c0"], np.zeros(8))
    server.receive_masked_vector(first)

    cases = [
        (first, "not expected"),  # a repeat
        (MaskedVector(client="c3", data=first.data), "not expected"),  # shared no keys
        (MaskedVector(client="c1", data=first.data[:-4]), "has 28 bytes, expected 32"),
        (
            MaskedVector(client="c1", data=(np.full(8, 1 << 16, "<u4")).tobytes()),
            "values of 2\\*\\*16 or more",
        ),
        (MaskedVector(client="stranger", data=first.data), "not among the round's clients"),
    ]
    for message, reason in cases:
        with pytest.raises(InvalidMessageError, match=reason):
            server.receive_masked_vector(message)
    server.receive_masked_vector(clients["c1"].mask(collect["c1"], np.zeros(8)))
    server.consistency_requests()
    with pytest.raises(InvalidMessageError, match="arrived in stage consistency"):
        server.receive_masked_vector(clients["c2"].mask(collect["c2"], np.zeros(8)))


def test_a_client_refuses_requests_out_of_stage_or_for_someone_else() -> None:
    setup = params(n=3, k=2, t=2, d=4)
    client, _ = SecAggClient.start(setup, "c0")
    from fedbus.secagg import CollectRequest, ShareKeysRequest

    with pytest.raises(InvalidMessageError, match="got a collect request in stage share_keys"):
        client.mask(CollectRequest(recipient="c0", ciphertexts={}), np.zeros(4))
    with pytest.raises(InvalidMessageError, match="addressed to c1"):
        client.share_keys(ShareKeysRequest(recipient="c1", public_keys={}))
    with pytest.raises(InvalidMessageError, match="not among the round's clients"):
        SecAggClient.start(setup, "c9")


@pytest.mark.parametrize("strategy", ["trimmed_mean", "median", "krum", "multi_krum", "bulyan"])
def test_rules_that_need_individual_updates_are_refused_with_the_reason(strategy: str) -> None:
    problem = strategy_problem(strategy)

    assert problem is not None
    assert problem.startswith(f"strategy {strategy} needs the individual client updates")
    offered = re.search(r"choose (.*), or turn", problem)
    assert offered is not None
    assert set(re.split(r", | or ", offered.group(1))) == {str(s) for s in WORKS_ON_THE_SUM}


def test_every_rule_on_the_mean_delta_is_allowed() -> None:
    allowed = [s for s in Strategy if strategy_problem(s) is None]

    assert sorted(allowed) == ["fedadagrad", "fedadam", "fedavg", "fedavgm", "fedprox", "fedyogi"]


def test_a_share_channel_opens_only_for_its_pair_direction_and_round() -> None:
    u, v = p.new_private_key(), p.new_private_key()
    sealed = p.ShareChannel(
        private=u, peer_public=p.public_key(v), session="s", sender="u", recipient="v"
    ).seal(b"shares")

    opened = p.ShareChannel(
        private=v, peer_public=p.public_key(u), session="s", sender="u", recipient="v"
    ).open(sealed)

    assert opened == b"shares"
    for session, sender, recipient in (("t", "u", "v"), ("s", "v", "u")):
        channel = p.ShareChannel(
            private=v,
            peer_public=p.public_key(u),
            session=session,
            sender=sender,
            recipient=recipient,
        )
        with pytest.raises(InvalidMessageError, match="fail authentication"):
            channel.open(sealed)


def test_a_layout_flattens_named_tensors_in_one_order_and_back() -> None:
    update = {"fc.weight": np.arange(6.0).reshape(2, 3), "conv.bias": np.array([7.0, 8.0])}
    layout = Layout.of(update)

    vector = layout.flatten(dict(reversed(update.items())))

    assert layout.dimension == 8
    assert vector.tolist() == [7.0, 8.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # names sorted
    back = layout.unflatten(vector)
    assert {n: a.tolist() for n, a in back.items()} == {n: a.tolist() for n, a in update.items()}
    assert Layout.model_validate_json(layout.model_dump_json()) == layout
    with pytest.raises(InvalidMessageError, match="names or shapes differ"):
        layout.flatten({"fc.weight": np.zeros((3, 2)), "conv.bias": np.zeros(2)})


def test_weighted_updates_sum_to_the_weighted_clipped_sum() -> None:
    setup = params(n=4, k=3, t=2, d=200)
    rng = np.random.default_rng(5)
    updates = {c: rng.normal(0, 0.4, 200) for c in setup.clients}
    weights = {"c0": 1.0, "c1": 0.5, "c2": 0.25, "c3": 0.125}  # samples / the most samples
    server, clients = after_share_keys(setup)
    for c, collect in server.collect_requests().items():
        server.receive_masked_vector(clients[c].mask(collect, updates[c], weight=weights[c]))
    for c, consistency in server.consistency_requests().items():
        server.receive_survivor_signature(clients[c].sign_survivors(consistency))
    for c, unmask_request in server.unmask_requests().items():
        server.receive_revealed_shares(clients[c].unmask(unmask_request))

    total = server.finish().float_sum()

    expected = sum(weights[c] * np.clip(updates[c], -0.5, 0.5) for c in setup.clients)
    assert np.abs(total - expected).max() <= 4 * 2 * 0.5 / setup.levels
    with pytest.raises(ValueError, match=r"weight must be in \(0, 1\], got 2"):
        quantize(np.zeros(3), clipping_range=1.0, levels=10, rng=rng, weight=2)
