"""SecAgg+ end to end, in memory: exact sums, dropouts, failing closed, tampering.

Every round runs the real client and server state machines with real keys, shares and
masks; only the transport is a loop, and every message crosses it as JSON. Quantization
draws come from seeded generators so the plain quantized updates can be recomputed and
compared exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import TypeVar

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from fedbus.secagg import (
    ClientState,
    CollectRequest,
    ConsistencyRequest,
    InvalidMessageError,
    RevealedShares,
    SecAggAbortedError,
    SecAggClient,
    SecAggParams,
    SecAggResult,
    SecAggServer,
    ServerState,
    ShareKeysRequest,
    Signer,
    UnmaskRequest,
    Verifier,
    quantize,
)
from fedbus.secagg.primitives import pairwise_seed

Tamper = Callable[[str, CollectRequest], CollectRequest]
M = TypeVar("M", bound=BaseModel)


def make_params(
    n: int = 10, *, k: int | None = None, t: int | None = None, bits: int = 32, d: int = 64
) -> SecAggParams:
    degree = n - 1 if k is None else k
    return SecAggParams(
        session="job-1/round-3",
        clients=tuple(f"site-{i:02d}" for i in range(n)),
        neighbours=degree,
        threshold=degree // 2 + 1 if t is None else t,
        bits=bits,
        clipping_range=1.0,
        dimension=d,
        graph_seed=b"public seed of round 3 of job-1..",
    )


def updates_for(params: SecAggParams, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.normal(0, 0.5, params.dimension) for c in params.clients}


def plain_quantized(params: SecAggParams, update: np.ndarray, client: str) -> np.ndarray:
    """What the client quantizes to, drawn with the same seed the round gives it."""
    return quantize(
        update, clipping_range=params.clipping_range, levels=params.levels, rng=rng_of(client)
    )


def plain_sum(
    params: SecAggParams, updates: dict[str, np.ndarray], kept: Collection[str]
) -> np.ndarray:
    """The plain integer sum of the named clients' quantized updates."""
    total = np.zeros(params.dimension, np.uint64)
    for c in kept:
        total += plain_quantized(params, updates[c], c)
    return total


def rng_of(client: str) -> np.random.Generator:
    return np.random.default_rng(int(client.split("-")[1]))


def wire(message: M) -> M:
    """What the receiver gets: every message crosses as JSON, as it would on Kafka."""
    return type(message).model_validate_json(message.model_dump_json())


def through_upload(
    params: SecAggParams,
    updates: dict[str, np.ndarray] | None = None,
    *,
    drop_before_upload: Collection[str] = (),
    tamper: Tamper | None = None,
    signers: dict[str, Signer] | None = None,
) -> tuple[SecAggServer, dict[str, SecAggClient]]:
    """A round up to the end of the upload (zero updates unless given)."""
    server = SecAggServer.start(params)
    clients = {}
    for c in params.clients:
        sign = signers[c] if signers else None
        clients[c], keys = SecAggClient.start(wire(params), c, sign=sign)
        # the rounding draws of rng_of(c), so plain_quantized can recompute them
        seed = int(c.split("-")[1]).to_bytes(16, "little")
        clients[c].state = clients[c].state.model_copy(update={"rounding_seed": seed})
        server.receive_public_keys(wire(keys))
    for c, keys_request in server.share_keys_requests().items():
        server.receive_encrypted_shares(wire(clients[c].share_keys(wire(keys_request))))
    for c, request in server.collect_requests().items():
        sent = wire(tamper(c, request) if tamper else request)
        if c not in drop_before_upload:
            update = np.zeros(params.dimension) if updates is None else updates[c]
            server.receive_masked_vector(wire(clients[c].mask(sent, update)))
    return server, clients


def keeping(requests: dict[str, CollectRequest]) -> Tamper:
    """A tamper that changes nothing and keeps each client's collect request."""

    def keep(client: str, request: CollectRequest) -> CollectRequest:
        requests[client] = request
        return request

    return keep


def through_consistency(
    server: SecAggServer, clients: dict[str, SecAggClient], signers: dict[str, Signer] | None = None
) -> dict[str, UnmaskRequest]:
    """Every uploader signs the survivor list; the unmask requests that follow."""
    for c, request in server.consistency_requests().items():
        sign = signers[c] if signers else None
        server.receive_survivor_signature(wire(clients[c].sign_survivors(wire(request), sign=sign)))
    return server.unmask_requests()


def run_round(
    params: SecAggParams,
    updates: dict[str, np.ndarray],
    *,
    drop_before_upload: Collection[str] = (),
    drop_before_unmask: Collection[str] = (),
    tamper: Tamper | None = None,
) -> SecAggResult:
    """One round; the named clients stop answering at the named stage."""
    server, clients = through_upload(
        params, updates, drop_before_upload=drop_before_upload, tamper=tamper
    )
    for c, unmask_request in through_consistency(server, clients).items():
        if c not in drop_before_unmask:
            server.receive_revealed_shares(wire(clients[c].unmask(wire(unmask_request))))
    return server.finish()


def test_unmasked_sum_equals_the_plain_quantized_sum_exactly() -> None:
    params = make_params(10)
    updates = updates_for(params)

    result = run_round(params, updates)

    plain = plain_sum(params, updates, params.clients)
    assert result.total.tolist() == plain.tolist()
    assert result.survivors == params.clients
    assert result.dropped == ()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(4, 12),
    bits=st.integers(8, 32),
    sparse=st.booleans(),
    dropped=st.sets(st.integers(0, 11), max_size=1),
)
def test_sum_is_exact_for_any_size_modulus_graph_and_one_dropout(
    n: int, bits: int, sparse: bool, dropped: set[int]
) -> None:
    k = n - 1 if not sparse or n < 6 else 4
    params = make_params(n, k=k, bits=bits, d=33)
    updates = updates_for(params, seed=n * bits)
    gone = {params.clients[i] for i in dropped if i < n}

    result = run_round(params, updates, drop_before_upload=gone)

    kept = [c for c in params.clients if c not in gone]
    plain = plain_sum(params, updates, kept)
    assert result.total.tolist() == plain.tolist()
    assert set(result.dropped) == gone


def test_ten_clients_three_dropping_after_key_sharing_and_one_after_upload() -> None:
    params = make_params(10, t=5)
    updates = updates_for(params)
    after_sharing = {"site-01", "site-04", "site-08"}
    after_upload = {"site-06"}

    result = run_round(
        params, updates, drop_before_upload=after_sharing, drop_before_unmask=after_upload
    )

    uploaded = [c for c in params.clients if c not in after_sharing]
    plain = plain_sum(params, updates, uploaded)
    assert result.total.tolist() == plain.tolist()
    assert result.survivors == tuple(uploaded)
    assert result.dropped == tuple(sorted(after_sharing))
    clipped = sum(np.clip(updates[c], -1, 1) for c in uploaded)
    step = 2 * params.clipping_range / params.levels
    assert np.abs(result.float_sum() - clipped).max() <= len(uploaded) * step


def test_sparse_graph_recovers_dropped_clients_from_their_neighbours() -> None:
    params = make_params(20, k=8, t=5)
    updates = updates_for(params, seed=7)
    gone = {"site-03", "site-11"}

    result = run_round(params, updates, drop_before_upload=gone, drop_before_unmask={"site-17"})

    kept = [c for c in params.clients if c not in gone]
    plain = plain_sum(params, updates, kept)
    assert result.total.tolist() == plain.tolist()


def test_fewer_uploads_than_the_threshold_fails_closed_with_the_reason() -> None:
    params = make_params(10, t=6)
    gone = {f"site-0{i}" for i in range(5)}

    with pytest.raises(SecAggAbortedError) as caught:
        run_round(params, updates_for(params), drop_before_upload=gone)

    assert (
        caught.value.reason == "clients that uploaded masked vectors: 5, fewer than the threshold 6"
    )


def test_fewer_answers_than_the_threshold_fails_closed_naming_the_secret() -> None:
    params = make_params(10, t=6)
    silent = {"site-00", "site-01", "site-02", "site-03"}

    with pytest.raises(SecAggAbortedError) as caught:
        run_round(params, updates_for(params), drop_before_unmask=silent)

    # site-00 has 6 answering neighbours (04 to 09); site-04 is the first with only 5
    assert (
        caught.value.reason
        == "cannot rebuild site-04's self-mask seed: 5 shares revealed, threshold 6"
    )


def test_a_client_never_reveals_both_secrets_of_one_neighbour() -> None:
    params = make_params(5)
    server, clients = through_upload(params)
    honest = through_consistency(server, clients)["site-00"]
    first = clients["site-00"].unmask(honest)
    assert "site-01" in first.self_mask_shares

    lying = honest.model_copy(
        update={"survivors": ("site-00", "site-02", "site-03", "site-04"), "dropped": ("site-01",)}
    )
    with pytest.raises(SecAggAbortedError, match="not the list this client signed"):
        clients["site-00"].unmask(lying)
    both = honest.model_copy(update={"dropped": ("site-01",)})
    with pytest.raises(SecAggAbortedError, match="asked for both secrets of site-01"):
        clients["site-00"].unmask(both)
    assert clients["site-00"].unmask(honest) == first  # a retry gets the same answer


def test_a_changed_ciphertext_is_refused_and_the_client_can_go_on() -> None:
    params = make_params(6)
    seen: list[str] = []

    def flip_one_bit(client: str, request: CollectRequest) -> CollectRequest:
        sender, ciphertext = next(iter(request.ciphertexts.items()))
        bad = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        seen.append(client)
        return request.model_copy(update={"ciphertexts": {**request.ciphertexts, sender: bad}})

    with pytest.raises(InvalidMessageError, match="fail authentication"):
        run_round(params, updates_for(params), tamper=flip_one_bit)
    assert seen == ["site-00"]


def test_a_ciphertext_readdressed_to_another_client_is_refused() -> None:
    params = make_params(6)

    def readdress(client: str, request: CollectRequest) -> CollectRequest:
        senders = sorted(request.ciphertexts)
        swapped = {
            senders[0]: request.ciphertexts[senders[1]],
            senders[1]: request.ciphertexts[senders[0]],
        }
        return request.model_copy(update={"ciphertexts": {**request.ciphertexts, **swapped}})

    with pytest.raises(InvalidMessageError, match="fail authentication"):
        run_round(params, updates_for(params), tamper=readdress)


@pytest.mark.parametrize("kind", ["self_mask_shares", "key_shares"])
def test_altered_shares_are_left_out_while_spares_last_then_the_round_aborts(kind: str) -> None:
    # 8 clients, t = 5, site-07 dropped: 6 survivors hold site-01's self-mask shares,
    # 7 hold site-07's key shares. Altering one more than the spares leaves no t-subset
    # of honest shares; altering only as many as the spares, the round still finishes.
    params = make_params(8, t=5)
    owner = "site-07" if kind == "key_shares" else "site-01"
    spares = 2 if kind == "key_shares" else 1
    for altered, aborts in ((spares + 1, True), (spares, False)):
        server, clients = through_upload(
            params, updates_for(params), drop_before_upload={"site-07"}
        )
        liars = [c for c in params.clients if c != owner][:altered]
        for c, unmask_request in through_consistency(server, clients).items():
            answer = clients[c].unmask(unmask_request)
            if c in liars:
                shares = dict(getattr(answer, kind))
                shares[owner] = bytes(15) + b"\x01"
                answer = answer.model_copy(update={kind: shares})
            server.receive_revealed_shares(answer)

        if aborts:
            with pytest.raises(SecAggAbortedError, match=f"shares of {owner}'s .* inconsistent"):
                server.finish()
        else:
            kept = params.clients[:7]
            expected = plain_sum(params, updates_for(params), kept)
            assert server.finish().total.tolist() == expected.tolist()


def test_the_server_refuses_shares_it_did_not_ask_for() -> None:
    params = make_params(5)
    server, clients = through_upload(params)
    through_consistency(server, clients)

    wrong_kind = RevealedShares(
        client="site-00", self_mask_shares={}, key_shares={"site-01": bytes(16)}
    )
    with pytest.raises(InvalidMessageError, match="key shares of dropped clients"):
        server.receive_revealed_shares(wrong_kind)
    stranger = RevealedShares(client="site-99", self_mask_shares={}, key_shares={})
    with pytest.raises(InvalidMessageError, match="not among the round's clients"):
        server.receive_revealed_shares(stranger)


@settings(max_examples=30, deadline=None)
@given(
    before_upload=st.sets(st.integers(0, 11), max_size=5),
    before_unmask=st.sets(st.integers(0, 11), max_size=5),
)
def test_any_dropouts_give_the_exact_sum_or_fail_closed_for_too_few(
    before_upload: set[int], before_unmask: set[int]
) -> None:
    params = make_params(12, k=6, t=4, d=16)
    updates = updates_for(params, seed=3)
    gone = {params.clients[i] for i in before_upload}
    silent = {params.clients[i] for i in before_unmask}

    refused: SecAggAbortedError | None = None
    try:
        result = run_round(params, updates, drop_before_upload=gone, drop_before_unmask=silent)
    except SecAggAbortedError as caught:
        refused = caught
    if refused is not None:  # never a wrong sum: only a threshold that was not met
        assert re.search(
            r"(fewer than the threshold|shares revealed, threshold) 4$", refused.reason
        )
        return

    kept = [c for c in params.clients if c not in gone]
    assert result.total.tolist() == plain_sum(params, updates, kept).tolist()


def identities(params: SecAggParams) -> tuple[dict[str, Signer], Verifier]:
    """An Ed25519 identity key per client, and a verifier that knows their public keys."""
    keys = {c: Ed25519PrivateKey.generate() for c in params.clients}

    def verify(client: str, statement: bytes, signature: bytes) -> bool:
        try:
            keys[client].public_key().verify(signature, statement)
        except InvalidSignature:
            return False
        return True

    return {c: keys[c].sign for c in params.clients}, verify


def test_signed_keys_let_clients_refuse_a_server_that_swaps_a_neighbours_keys() -> None:
    params = make_params(5)
    signers, verify = identities(params)
    server = SecAggServer.start(params)
    clients = {}
    for c in params.clients:
        clients[c], keys = SecAggClient.start(params, c, sign=signers[c])
        server.receive_public_keys(wire(keys))
    requests = server.share_keys_requests()
    honest = requests["site-00"]
    _, forged = SecAggClient.start(params, "site-01")  # keys the server made for site-01
    swapped = {
        **honest.public_keys,
        "site-01": forged.model_copy(update={"signature": honest.public_keys["site-01"].signature}),
    }

    with pytest.raises(
        InvalidMessageError, match="keys given for site-01 are not signed by site-01"
    ):
        clients["site-00"].share_keys(
            honest.model_copy(update={"public_keys": swapped}), verify=verify
        )
    unsigned = {**honest.public_keys, "site-01": forged}
    with pytest.raises(InvalidMessageError, match="not signed by site-01"):
        clients["site-00"].share_keys(
            honest.model_copy(update={"public_keys": unsigned}), verify=verify
        )
    shares = clients["site-00"].share_keys(wire(honest), verify=verify)  # the real keys pass
    assert set(shares.ciphertexts) == {"site-01", "site-02", "site-03", "site-04"}


def test_a_signed_round_with_the_consistency_check_gives_the_exact_sum() -> None:
    params = make_params(6, k=4, t=3)
    signers, verify = identities(params)
    updates = updates_for(params)
    server, clients = through_upload(
        params, updates, drop_before_upload={"site-05"}, signers=signers
    )
    for c, request in through_consistency(server, clients, signers).items():
        server.receive_revealed_shares(wire(clients[c].unmask(wire(request), verify=verify)))

    result = server.finish()

    kept = params.clients[:5]
    assert result.total.tolist() == plain_sum(params, updates, kept).tolist()


def lying_server_round() -> tuple[
    SecAggServer, dict[str, SecAggClient], Verifier, dict[str, Signer]
]:
    """The review's proof of concept: complete graph, n = 10, t = 5, signed keys."""
    params = make_params(10, t=5)
    signers, verify = identities(params)
    server, clients = through_upload(params, updates_for(params), signers=signers)
    return server, clients, verify, signers


def split_lists(
    params: SecAggParams, each: int = 5
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """What a lying server tells each neighbour of site-00: (survivors, dropped).

    Each is told that site-00 and itself survived and the next ``each`` others dropped.
    With ``each = 5`` (the review's proof of concept) site-00's self-mask seed comes
    from all of them and each neighbour's mask key from five others: with both, the
    server unmasks site-00's update alone. With 4, each list leaves its recipient
    ``t`` surviving neighbours, so only the signatures can tell the lists differ.
    """
    others = params.clients[1:]
    lists = {}
    for i, w in enumerate(others):
        dropped = tuple(sorted(others[(i + j) % 9] for j in range(1, each + 1)))
        lists[w] = (tuple(c for c in params.clients if c not in dropped), dropped)
    return lists


def test_a_server_that_asks_each_neighbour_to_sign_a_different_list_gets_no_share() -> None:
    server, clients, verify, signers = lying_server_round()
    lists = split_lists(server.state.params, each=4)
    signatures = {
        w: clients[w]
        .sign_survivors(ConsistencyRequest(recipient=w, survivors=survivors), sign=signers[w])
        .signature
        for w, (survivors, _) in lists.items()
    }

    for w, (survivors, dropped) in lists.items():
        request = UnmaskRequest(
            recipient=w, survivors=survivors, dropped=dropped, signatures=signatures
        )
        with pytest.raises(SecAggAbortedError, match="valid signatures on the survivor list"):
            clients[w].unmask(request, verify=verify)
        assert clients[w].state.answered_unmask == b""  # no share revealed


def test_a_client_refuses_to_sign_a_list_leaving_it_fewer_than_t_neighbours() -> None:
    server, clients, _, signers = lying_server_round()
    server.consistency_requests()

    for w, (survivors, _) in split_lists(server.state.params).items():
        with pytest.raises(SecAggAbortedError, match="neighbours among the survivors: 4"):
            clients[w].sign_survivors(
                ConsistencyRequest(recipient=w, survivors=survivors), sign=signers[w]
            )


def test_a_server_that_lies_after_an_honest_consistency_round_gets_no_share() -> None:
    server, clients, verify, signers = lying_server_round()
    honest = through_consistency(server, clients, signers)

    for w, (survivors, dropped) in split_lists(server.state.params).items():
        lying = honest[w].model_copy(update={"survivors": survivors, "dropped": dropped})
        with pytest.raises(SecAggAbortedError, match="not the list this client signed"):
            clients[w].unmask(lying, verify=verify)


def test_only_neighbours_valid_signatures_on_the_same_list_count() -> None:
    params = make_params(6, k=2, t=2)
    signers, verify = identities(params)
    server, clients = through_upload(params, signers=signers)
    honest = through_consistency(server, clients, signers)
    me = "site-00"
    neighbours = clients[me].neighbours
    strangers = [c for c in params.clients if c not in neighbours and c != me]
    signatures = server.state.signatures  # everyone's: the request holds the neighbours'
    assert set(honest[me].signatures) == set(neighbours)
    forged = {n: signers[strangers[0]](b"something else") for n in neighbours}

    cases = {
        "non-neighbours only": {c: signatures[c] for c in strangers},
        "one neighbour": {neighbours[0]: signatures[neighbours[0]]},
        "forged": forged,
    }
    for case, shown in cases.items():
        request = honest[me].model_copy(update={"signatures": shown})
        with pytest.raises(SecAggAbortedError, match=r"valid signatures .*: \d, fewer"):
            clients[me].unmask(request, verify=verify)
        assert clients[me].state.answered_unmask == b"", case  # no share revealed
    assert clients[me].unmask(honest[me], verify=verify).client == me


@pytest.mark.parametrize(
    ("survivors", "error", "reason"),
    [
        (("site-00", "ghost-1", "ghost-2"), InvalidMessageError, "ids outside the round"),
        (("site-00", "site-01", "site-01"), InvalidMessageError, "repeated ids"),
        (("site-01", "site-02", "site-03"), InvalidMessageError, "leaves this client out"),
        (("site-00", "site-01"), SecAggAbortedError, "neighbours among the survivors: 1"),
    ],
)
def test_a_client_signs_no_list_with_made_up_ids_or_too_few_neighbours(
    survivors: tuple[str, ...], error: type[Exception], reason: str
) -> None:
    params = make_params(5, t=3)
    server, clients = through_upload(params)
    server.consistency_requests()

    with pytest.raises(error, match=reason):
        clients["site-00"].sign_survivors(
            ConsistencyRequest(recipient="site-00", survivors=survivors)
        )
    assert clients["site-00"].state.signed_survivors is None


def test_dropped_ids_outside_the_round_are_refused() -> None:
    params = make_params(5)
    server, clients = through_upload(params)
    honest = through_consistency(server, clients)["site-00"]

    with pytest.raises(InvalidMessageError, match="ids outside the round"):
        clients["site-00"].unmask(honest.model_copy(update={"dropped": ("ghost",)}))


def test_a_small_order_public_key_is_refused_naming_its_owner() -> None:
    params = make_params(5)
    server = SecAggServer.start(params)
    _, keys = SecAggClient.start(params, "site-01")
    zero = keys.model_copy(update={"mask_key": bytes(32)})

    with pytest.raises(InvalidMessageError, match="site-01's mask key is not a usable X25519"):
        server.receive_public_keys(zero)

    # a server that forwards it anyway: the neighbour refuses it before sharing
    client, _ = SecAggClient.start(params, "site-00")
    request = ShareKeysRequest(recipient="site-00", public_keys={"site-01": zero})
    with pytest.raises(InvalidMessageError, match="site-01's mask key is not a usable X25519"):
        client.share_keys(request)
    with pytest.raises(InvalidMessageError, match="between a and b failed"):
        pairwise_seed(bytes(range(32)), bytes(32), session="s", a="a", b="b")


def test_masking_again_from_the_saved_state_resends_the_same_bytes_or_refuses() -> None:
    params = make_params(5, d=8)
    requests: dict[str, CollectRequest] = {}
    keep = keeping(requests)
    _, clients = through_upload(params, drop_before_upload={"site-00"}, tamper=keep)
    collect = requests["site-00"]
    update = np.random.default_rng(3).normal(0, 0.3, 8)
    before = clients["site-00"].state.model_dump_json()
    first = clients["site-00"].mask(collect, update)
    after = clients["site-00"].state.model_dump_json()

    # restarted from the state saved after masking (the documented order)
    restarted = SecAggClient(ClientState.model_validate_json(after))
    assert restarted.mask(collect, update) == first
    with pytest.raises(SecAggAbortedError, match="already sent and this one differs"):
        restarted.mask(collect, update + 0.1)
    # from the state saved before masking, the same update masks to the same bytes
    assert SecAggClient(ClientState.model_validate_json(before)).mask(collect, update) == first


def test_a_client_answers_one_unmask_request_even_after_a_restart() -> None:
    params = make_params(5)
    server, clients = through_upload(params, drop_before_upload={"site-04"})
    honest = through_consistency(server, clients)["site-00"]
    saved = clients["site-00"].state.model_dump_json()  # after signing, before unmasking
    first = clients["site-00"].unmask(honest)

    other = honest.model_copy(update={"dropped": ()})
    with pytest.raises(SecAggAbortedError, match="already answered a different unmask request"):
        clients["site-00"].unmask(other)
    restarted = SecAggClient(ClientState.model_validate_json(saved))
    lying = honest.model_copy(
        update={"survivors": ("site-00", "site-02", "site-03"), "dropped": ("site-01", "site-04")}
    )
    with pytest.raises(SecAggAbortedError, match="not the list this client signed"):
        restarted.unmask(lying)
    assert restarted.unmask(honest) == first
    with pytest.raises(SecAggAbortedError, match="already signed a different survivor list"):
        restarted.sign_survivors(
            ConsistencyRequest(recipient="site-00", survivors=("site-00", "site-01", "site-02"))
        )


def test_keys_signed_for_other_parameters_are_refused() -> None:
    params = make_params(5)
    other = params.model_copy(update={"graph_seed": b"another graph seed for round 3.."})
    signers, verify = identities(params)
    _, keys = SecAggClient.start(other, "site-01", sign=signers["site-01"])
    client, _ = SecAggClient.start(params, "site-00")

    request = ShareKeysRequest(recipient="site-00", public_keys={"site-01": keys})
    with pytest.raises(InvalidMessageError, match="not signed by site-01"):
        client.share_keys(request, verify=verify)


def test_a_snapshot_is_not_changed_by_what_the_server_receives_after_it() -> None:
    params = make_params(5, d=8)
    updates = updates_for(params, seed=4)
    requests: dict[str, CollectRequest] = {}
    keep = keeping(requests)
    server, clients = through_upload(
        params, updates, drop_before_upload=set(params.clients[1:]), tamper=keep
    )
    snapshot = server.snapshot()
    server.receive_masked_vector(clients["site-01"].mask(requests["site-01"], updates["site-01"]))
    assert snapshot.uploaded == ["site-00"]

    # the aggregator restarts from the snapshot; site-01 resends, the others upload
    restored = SecAggServer(ServerState.model_validate_json(snapshot.model_dump_json()))
    for c in params.clients[1:]:
        restored.receive_masked_vector(wire(clients[c].mask(requests[c], updates[c])))
    for c, request in through_consistency(restored, clients).items():
        restored.receive_revealed_shares(wire(clients[c].unmask(wire(request))))

    result = restored.finish()
    assert result.total.tolist() == plain_sum(params, updates, params.clients).tolist()


def shared_keys(params: SecAggParams) -> tuple[SecAggServer, dict[str, SecAggClient]]:
    """A round up to the end of setup: every client advertised its keys."""
    server = SecAggServer.start(params)
    clients = {}
    for c in params.clients:
        clients[c], keys = SecAggClient.start(params, c)
        server.receive_public_keys(keys)
    return server, clients


def test_the_server_refuses_shares_that_leave_out_a_neighbour_with_keys() -> None:
    params = make_params(6, k=4, t=3)
    server, clients = shared_keys(params)
    requests = server.share_keys_requests()
    shares = clients["site-00"].share_keys(requests["site-00"])
    left_out = sorted(shares.ciphertexts)[0]
    partial = {v: c for v, c in shares.ciphertexts.items() if v != left_out}

    with pytest.raises(InvalidMessageError, match=rf"no shares to its neighbours \['{left_out}'\]"):
        server.receive_encrypted_shares(shares.model_copy(update={"ciphertexts": partial}))
    assert "site-00" not in server.state.shares
    server.receive_encrypted_shares(shares)  # all its neighbours: accepted


def test_the_server_refuses_other_keys_from_a_client_that_advertised_before() -> None:
    params = make_params(5)
    server, _ = shared_keys(params)
    first = server.state.public_keys["site-00"]
    _, other = SecAggClient.start(params, "site-00")

    with pytest.raises(InvalidMessageError, match="site-00 advertised different keys twice"):
        server.receive_public_keys(other)
    server.receive_public_keys(first)  # the same keys again: ignored
    assert server.state.public_keys["site-00"] == first


def test_the_server_refuses_shares_addressed_to_non_neighbours() -> None:
    params = make_params(6, k=2, t=2)
    server, clients = shared_keys(params)
    shares = clients["site-00"].share_keys(server.share_keys_requests()["site-00"])
    neighbours = clients["site-00"].neighbours
    stranger = next(c for c in params.clients if c not in neighbours and c != "site-00")
    extra = {**shares.ciphertexts, stranger: next(iter(shares.ciphertexts.values()))}

    with pytest.raises(InvalidMessageError, match=rf"shares to non-neighbours \['{stranger}'\]"):
        server.receive_encrypted_shares(shares.model_copy(update={"ciphertexts": extra}))
    assert "site-00" not in server.state.shares


def test_the_server_refuses_a_second_different_survivor_signature() -> None:
    params = make_params(5)
    signers, _ = identities(params)
    server, clients = through_upload(params, signers=signers)
    request = server.consistency_requests()["site-00"]
    signed = clients["site-00"].sign_survivors(request, sign=signers["site-00"])
    server.receive_survivor_signature(signed)

    other = signed.model_copy(update={"signature": signers["site-00"](b"another list")})
    with pytest.raises(InvalidMessageError, match="site-00 sent two different survivor sig"):
        server.receive_survivor_signature(other)
    server.receive_survivor_signature(signed)  # a repeat: kept as it was
    assert server.state.signatures["site-00"] == signed.signature


def test_the_server_refuses_a_revealed_share_its_sender_cannot_hold() -> None:
    params = make_params(6, k=2, t=2)
    server, clients = through_upload(params)
    requests = through_consistency(server, clients)
    me = "site-00"
    answer = clients[me].unmask(requests[me])
    stranger = next(c for c in params.clients if c not in clients[me].neighbours and c != me)

    for field in ("self_mask_shares", "key_shares"):
        shares = {**getattr(answer, field), stranger: bytes(16)}
        with pytest.raises(InvalidMessageError, match=f"share of {stranger} it cannot hold"):
            server.receive_revealed_shares(answer.model_copy(update={field: shares}))
    neighbour = clients[me].neighbours[0]
    short = {**answer.self_mask_shares, neighbour: bytes(15)}
    with pytest.raises(InvalidMessageError, match=f"share of {neighbour} it cannot hold"):
        server.receive_revealed_shares(answer.model_copy(update={"self_mask_shares": short}))
    assert me not in server.state.revealed


def test_the_server_keeps_the_first_revealed_shares_and_refuses_different_ones() -> None:
    params = make_params(5)
    updates = updates_for(params, seed=5)
    server, clients = through_upload(params, updates)
    requests = through_consistency(server, clients)
    answers = {c: clients[c].unmask(r) for c, r in requests.items()}
    first = answers["site-00"]
    server.receive_revealed_shares(first)

    owner = next(iter(first.self_mask_shares))
    altered = {**first.self_mask_shares, owner: bytes(15) + b"\x01"}
    with pytest.raises(InvalidMessageError, match="site-00 sent two different sets of revealed"):
        server.receive_revealed_shares(first.model_copy(update={"self_mask_shares": altered}))
    server.receive_revealed_shares(first)  # a repeat of the first: accepted
    for c in params.clients[1:]:
        server.receive_revealed_shares(answers[c])
    expected = plain_sum(params, updates, params.clients)
    assert server.finish().total.tolist() == expected.tolist()


def test_a_client_refuses_keys_of_a_stranger_or_a_neighbours_keys_under_another_name() -> None:
    params = make_params(6, k=2, t=2)
    server, clients = shared_keys(params)
    me = "site-00"
    honest = server.share_keys_requests()[me]
    first, second = clients[me].neighbours
    stranger = next(c for c in params.clients if c not in (me, first, second))
    keys = server.state.public_keys

    cases = {
        stranger: {**honest.public_keys, stranger: keys[stranger]},
        # the server hands site-00 second's keys labelled as first's (both entries kept)
        first: {first: keys[second], second: keys[second]},
    }
    for owner, shown in cases.items():
        with pytest.raises(InvalidMessageError, match=f"keys of {owner} are not a neighbour's"):
            clients[me].share_keys(honest.model_copy(update={"public_keys": shown}))
        assert clients[me].state.stage == "share_keys"
    assert set(clients[me].share_keys(honest).ciphertexts) == {first, second}


def test_a_client_refuses_a_ciphertext_from_a_stranger() -> None:
    params = make_params(6, k=2, t=2)
    requests: dict[str, CollectRequest] = {}
    keep = keeping(requests)
    server, clients = through_upload(params, drop_before_upload=params.clients, tamper=keep)
    me = "site-00"
    stranger = next(c for c in params.clients if c not in clients[me].neighbours and c != me)
    from_stranger = next(iter(server.state.shares[stranger].ciphertexts.values()))
    forged = requests[me].model_copy(
        update={"ciphertexts": {**requests[me].ciphertexts, stranger: from_stranger}}
    )

    with pytest.raises(InvalidMessageError, match=f"shares from {stranger}, who is not a neigh"):
        clients[me].mask(forged, np.zeros(params.dimension))
    assert clients[me].state.stage == "collect"
    clients[me].mask(requests[me], np.zeros(params.dimension))
    assert clients[me].state.stage == "consistency"
