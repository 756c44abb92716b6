"""Benchmark: SecAgg+ CPU time per round and bytes per client (``fedbus.secagg``).

One in-process round per configuration, every client and the server running the real
protocol (keys, Shamir shares, AES-CTR masks, unmasking); only the transport is a loop,
so the figures are CPU (``time.process_time`` around each call), not network time.
Configurations (issue 15): 50 clients x 100,000 parameters and 100 clients x 1,658,634
parameters (the CNN layout of ``bench/aggregation_fedavg.py``), each with no dropout and
with 10% of the clients dropping after key sharing (the server then rebuilds their keys
and removes their pairwise masks: the costly case). Parameters are
``SecAggParams.recommended``: degree ``k = 2 * ceil(log2 n)`` and threshold
``t = k // 2 + 1`` (n = 50: k = 12, t = 7; n = 100: k = 14, t = 8), 32-bit modulus,
clipping range 1.

Bytes per client count what each message would weigh: the JSON of the Kafka-sized
messages (public keys, encrypted shares, requests, revealed shares) and the raw bytes of
the masked vector (object storage). Goals: server <= 1 s for 50 x 100k; <= 10 s with 10%
dropout.

Every round runs the consistency check (each survivor signs the survivor list; the
signatures go back with the unmask requests). With ``--signed`` each client has an
Ed25519 identity key: it signs its public keys and the list, and checks its neighbours'
signatures on both (Ed25519 from ``cryptography``); without it the signatures are empty.

With ``--flower`` the same run then runs Flower's SecAggPlusWorkflow on the same sizes,
degree and threshold (``bench/secagg_flower.py`` in ``bench/.venv-flower``, which
``bash bench/flower_venv.sh`` builds: Flower is never a fedbus dependency) and prints the
two side by side. Goal: faster than Flower.

    .venv/bin/python bench/secagg.py [--quick] [--signed] [--flower]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from fedbus.secagg import (
    MaskedVector,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    Signer,
    Verifier,
)

T = TypeVar("T")
CONFIGS = [(50, 100_000, 0.0), (50, 100_000, 0.1), (100, 1_658_634, 0.0), (100, 1_658_634, 0.1)]
GOALS = {(50, 100_000, 0.0): 1.0, (50, 100_000, 0.1): 10.0}


@dataclass
class Costs:
    """CPU seconds and bytes, per party."""

    cpu: dict[str, float] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def timed(self, who: str, call: Callable[[], T]) -> T:
        start = time.process_time()
        result = call()
        self.cpu[who] = self.cpu.get(who, 0.0) + time.process_time() - start
        return result

    def count(self, who: str, message: BaseModel, *, to_server: bool) -> None:
        if isinstance(message, MaskedVector):
            size = len(message.data)
        else:
            size = len(message.model_dump_json())
        book = self.sent if to_server else self.received
        book[who] = book.get(who, 0) + size


def identities(clients: tuple[str, ...]) -> tuple[dict[str, Signer], Verifier]:
    """An Ed25519 identity key per client, and a verifier that knows the public halves."""
    keys = {c: Ed25519PrivateKey.generate() for c in clients}
    public = {c: k.public_key() for c, k in keys.items()}

    def verify(client: str, statement: bytes, signature: bytes) -> bool:
        try:
            public[client].verify(signature, statement)
        except InvalidSignature:
            return False
        return True

    return {c: k.sign for c, k in keys.items()}, verify


def one_round(
    n: int, dimension: int, dropout: float, *, signed: bool
) -> tuple[Costs, SecAggParams, float]:
    """Run a round; return the costs, the parameters and the sum's largest error."""
    params = SecAggParams.recommended(
        session="bench/1",
        clients=[f"site-{i:03d}" for i in range(n)],
        dimension=dimension,
        clipping_range=1.0,
        graph_seed=b"bench graph seed",
    )
    gone = set(random.Random(0).sample(params.clients, round(dropout * n)))
    costs, server = Costs(), SecAggServer.start(params)
    signers, verifier = identities(params.clients)
    sign: dict[str, Signer | None] = {c: signers[c] if signed else None for c in params.clients}
    verify = verifier if signed else None
    clients = {}
    for c in params.clients:
        clients[c], keys = costs.timed(c, lambda c=c: SecAggClient.start(params, c, sign=sign[c]))
        costs.count(c, keys, to_server=True)
        costs.timed("server", lambda keys=keys: server.receive_public_keys(keys))
    for c, ask in costs.timed("server", server.share_keys_requests).items():
        costs.count(c, ask, to_server=False)
        shares = costs.timed(c, lambda c=c, ask=ask: clients[c].share_keys(ask, verify=verify))
        costs.count(c, shares, to_server=True)
        costs.timed("server", lambda shares=shares: server.receive_encrypted_shares(shares))
    rng, expected = np.random.default_rng(0), np.zeros(dimension)
    for c, collect in costs.timed("server", server.collect_requests).items():
        if c in gone:
            continue
        costs.count(c, collect, to_server=False)
        update = rng.normal(0, 0.05, dimension)  # not timed: this is training's output
        expected += update
        masked = costs.timed(c, lambda c=c, collect=collect, u=update: clients[c].mask(collect, u))
        costs.count(c, masked, to_server=True)
        costs.timed("server", lambda masked=masked: server.receive_masked_vector(masked))
        del masked
    for c, check in costs.timed("server", server.consistency_requests).items():
        costs.count(c, check, to_server=False)
        signature = costs.timed(
            c, lambda c=c, check=check: clients[c].sign_survivors(check, sign=sign[c])
        )
        costs.count(c, signature, to_server=True)
        costs.timed("server", lambda s=signature: server.receive_survivor_signature(s))
    for c, ask in costs.timed("server", server.unmask_requests).items():
        costs.count(c, ask, to_server=False)
        answer = costs.timed(c, lambda c=c, ask=ask: clients[c].unmask(ask, verify=verify))
        costs.count(c, answer, to_server=True)
        costs.timed("server", lambda answer=answer: server.receive_revealed_shares(answer))
    result = costs.timed("server", server.finish)
    error = float(np.abs(result.float_sum() - expected).max())
    return costs, params, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 50 x 100k rows")
    parser.add_argument(
        "--signed", action="store_true", help="Ed25519 identity keys sign keys and the list"
    )
    parser.add_argument("--flower", action="store_true", help="then Flower, same sizes")
    args = parser.parse_args()
    ours = {}
    print(
        f"{'clients x params':>18} {'drop':>5} {'k':>3} {'t':>3} {'server s':>9} {'goal':>9} "
        f"{'client s mean/max':>17} {'up MB':>7} {'down KB':>8} {'max |err|':>10}"
    )
    for n, dimension, dropout in CONFIGS[:2] if args.quick else CONFIGS:
        costs, params, error = one_round(n, dimension, dropout, signed=args.signed)
        ours[n, dimension, dropout] = costs
        uploaders = [c for c in params.clients if costs.sent.get(c, 0) > 4 * dimension]
        client_cpu = [costs.cpu[c] for c in uploaders]
        up = max(costs.sent[c] for c in uploaders) / 1e6
        down = max(costs.received[c] for c in uploaders) / 1e3
        goal = GOALS.get((n, dimension, dropout))
        mark = (
            "-"
            if goal is None
            else (f"<={goal:g}" + (" ok" if costs.cpu["server"] <= goal else " MISSED"))
        )
        print(
            f"{n:>5} x {dimension:>10,} {dropout:>5.0%} {params.neighbours:>3} "
            f"{params.threshold:>3} {costs.cpu['server']:>9.3f} {mark:>9} "
            f"{np.mean(client_cpu):>8.3f}/{max(client_cpu):<8.3f} {up:>7.3f} {down:>8.1f} "
            f"{error:>10.2e}"
        )
    print(
        "client s, up, down: per uploading client (CPU of its five stages; the most any one "
        "sends, the masked vector being 4 bytes x params; the most it receives). "
        "max |err|: dequantized sum vs float sum (quantization only)."
    )
    if args.flower:
        compare_with_flower(ours, quick=args.quick)


def compare_with_flower(ours: dict[tuple[int, int, float], Costs], *, quick: bool) -> None:
    """Run bench/secagg_flower.py in Flower's venv; print both servers and clients."""
    here = Path(__file__).parent
    python = here / ".venv-flower" / "bin" / "python"
    if not python.exists():
        print(f"no {python}: run `bash bench/flower_venv.sh` first", file=sys.stderr)
        raise SystemExit(1)
    command = [str(python), str(here / "secagg_flower.py"), "--json"]
    command += ["--quick"] if quick else []
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    print("\nFlower SecAggPlusWorkflow, same sizes, same machine, right after:")
    print(
        f"{'clients x params':>18} {'drop':>5} {'server s fedbus/Flower':>27} "
        f"{'client s fedbus/Flower':>27} {'up MB fedbus/Flower':>20}"
    )
    for line in lines:
        row = json.loads(line)
        key = (row["clients"], row["dimension"], row["dropout"])
        costs = ours[key]
        uploaders = [c for c in costs.cpu if c != "server" and costs.sent.get(c, 0) > 4 * key[1]]
        client = float(np.mean([costs.cpu[c] for c in uploaders]))
        up = max(costs.sent[c] for c in uploaders) / 1e6
        server = costs.cpu["server"]
        print(
            f"{key[0]:>5} x {key[1]:>10,} {key[2]:>5.0%} "
            f"{server:>10.3f}/{row['server']:<8.3f}({row['server'] / server:>5.1f}x) "
            f"{client:>10.3f}/{row['client_mean']:<8.3f}({row['client_mean'] / client:>5.1f}x) "
            f"{up:>8.3f}/{row['up_bytes'] / 1e6:<8.3f}"
        )


if __name__ == "__main__":
    main()
