"""Secure aggregation: SecAgg+ (Bell et al., 2020) over X25519, AES-CTR and Shamir.

The server learns the sum of the clients' clipped, quantized updates and nothing about
any one of them, even when some clients drop out mid-round (Bonawitz et al., 2017, when
the neighbour graph is complete). The library is pure: no Kafka, no storage, just the
two state machines and their messages; see docs/secagg.md.

A round, with ``params`` agreed beforehand::

    server = SecAggServer.start(params)
    client, keys = SecAggClient.start(params, "site-a", sign=sign)  # each client
    server.receive_public_keys(keys)
    for request in server.share_keys_requests().values():    # to each client
        server.receive_encrypted_shares(client.share_keys(request, verify=verify))
    for request in server.collect_requests().values():
        server.receive_masked_vector(client.mask(request, update))
    for request in server.consistency_requests().values():
        server.receive_survivor_signature(client.sign_survivors(request, sign=sign))
    for request in server.unmask_requests().values():
        server.receive_revealed_shares(client.unmask(request, verify=verify))
    result = server.finish()          # result.total, result.float_sum()

``sign`` (the client's identity key) and ``verify`` (everyone's public identity keys)
are optional; without them the server is trusted to forward keys and lists unchanged.
"""

from fedbus.secagg.arith import dequantize_sum, quantize
from fedbus.secagg.client import ClientState, SecAggClient, Signer, Verifier
from fedbus.secagg.compat import WORKS_ON_THE_SUM, strategy_problem
from fedbus.secagg.errors import (
    InvalidMessageError,
    SecAggAbortedError,
    SecAggError,
    SecAggParamsError,
)
from fedbus.secagg.graph import neighbour_graph
from fedbus.secagg.layout import Layout
from fedbus.secagg.messages import (
    CollectRequest,
    ConsistencyRequest,
    EncryptedShares,
    MaskedVector,
    PublicKeys,
    RevealedShares,
    ShareKeysRequest,
    SurvivorSignature,
    UnmaskRequest,
)
from fedbus.secagg.params import SecAggParams
from fedbus.secagg.server import SecAggResult, SecAggServer, ServerState

__all__ = [
    "WORKS_ON_THE_SUM",
    "ClientState",
    "CollectRequest",
    "ConsistencyRequest",
    "EncryptedShares",
    "InvalidMessageError",
    "Layout",
    "MaskedVector",
    "PublicKeys",
    "RevealedShares",
    "SecAggAbortedError",
    "SecAggClient",
    "SecAggError",
    "SecAggParams",
    "SecAggParamsError",
    "SecAggResult",
    "SecAggServer",
    "ServerState",
    "ShareKeysRequest",
    "Signer",
    "SurvivorSignature",
    "UnmaskRequest",
    "Verifier",
    "dequantize_sum",
    "neighbour_graph",
    "quantize",
    "strategy_problem",
]
