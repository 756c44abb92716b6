"""Flower's SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) on the sizes of bench/secagg.py.

Runs in its own environment, never fedbus's: ``bash bench/flower_venv.sh`` builds
``bench/.venv-flower`` with ``bench/requirements-flower.txt``; then

    bench/.venv-flower/bin/python bench/secagg_flower.py [--quick]

The real workflow and client mod run in one process: an in-process ``Grid`` hands each
message to the node's ``ClientApp`` (with ``secaggplus_mod``) and returns its reply, and
a node in the dropout set does not answer the collect-masked-vectors stage (it drops
after key sharing, as in bench/secagg.py). CPU is ``time.process_time``: the clients'
time is what their ``ClientApp`` calls took; the server's is the workflow's total less
the clients', less copying each message for its node (transport), and less the
strategy's ``aggregate_fit`` (FedAvg over the already
aggregated result, not part of the protocol). Flower counts the client's own share in
``num_shares``, so ``num_shares = k + 1`` with fedbus's ``k`` and ``t``; clipping range 1,
Flower's default quantization (2**22 levels) and modulus (2**32).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import time
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage
from flwr.server import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp.grid import Grid
from flwr.supercore.task_identity import TaskIdentity

CONFIGS = [(50, 100_000, 0.0), (50, 100_000, 0.1), (100, 1_658_634, 0.0), (100, 1_658_634, 0.1)]
DEGREE = {50: (12, 7), 100: (14, 8)}  # fedbus's recommended k and t


class InProcessGrid(Grid):
    """Delivers each message to its node's ClientApp at once; times the clients."""

    def __init__(self, apps: dict[int, ClientApp], dropped: set[int]) -> None:
        self.apps, self.dropped = apps, dropped
        self.contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
            for nid in apps
        }
        self.client_cpu: dict[int, float] = {}
        self.transport_cpu = 0.0
        self.sent: dict[int, int] = {}

    def set_run(self, run: Any) -> None:
        pass

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def get_nodes(self) -> Iterable[Any]:
        raise NotImplementedError

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for original in messages:
            # a real transport gives each node its own copy (the mod pops keys from it)
            start = time.process_time()
            msg = copy.deepcopy(original)
            self.transport_cpu += time.process_time() - start
            nid = msg.metadata.dst_node_id
            stage = msg.content.config_records[RECORD_KEY_CONFIGS]["stage"]
            if nid in self.dropped and stage == Stage.COLLECT_MASKED_VECTORS:
                continue
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            start = time.process_time()
            reply = self.apps[nid](msg, self.contexts[nid])
            self.client_cpu[nid] = self.client_cpu.get(nid, 0.0) + time.process_time() - start
            configs = reply.content.config_records[RECORD_KEY_CONFIGS]
            self.sent[nid] = self.sent.get(nid, 0) + sum(
                len(v) if isinstance(v, bytes) else sum(len(x) for x in v if isinstance(x, bytes))
                for v in configs.values()
                if isinstance(v, (bytes, list))
            )
            replies.append(reply)
        return replies


class TimedFedAvg(FedAvg):
    """FedAvg whose aggregate_fit time is kept apart (it is not the protocol's)."""

    aggregate_cpu = 0.0

    def aggregate_fit(self, *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return super().aggregate_fit(*args, **kwargs)
        finally:
            TimedFedAvg.aggregate_cpu += time.process_time() - start


class BenchClient(NumPyClient):
    def __init__(self, update: list[np.ndarray]) -> None:
        self.update = update

    def fit(self, parameters: Any, config: Any) -> Any:
        return self.update, 1, {}


def client_fn_for(update: list[np.ndarray]) -> Any:
    def client_fn(context: Context) -> Any:
        return BenchClient(update).to_client()

    return client_fn


def one_round(n: int, dimension: int, dropout: float) -> dict[str, float]:
    k, t = DEGREE[n]
    rng = np.random.default_rng(0)
    updates = {nid: [rng.normal(0, 0.05, dimension).astype(np.float32)] for nid in range(1, n + 1)}
    apps = {
        nid: ClientApp(client_fn=client_fn_for(updates[nid]), mods=[secaggplus_mod])
        for nid in updates
    }
    dropped = set(random.Random(0).sample(sorted(updates), round(dropout * n)))
    grid = InProcessGrid(apps, dropped)
    manager = SimpleClientManager()
    for nid in updates:
        manager.register(GridClientProxy(nid, grid, 1))
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord([np.zeros(dimension, np.float32)])
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    strategy = TimedFedAvg(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n)
    legacy = LegacyContext(context, strategy=strategy, client_manager=manager)
    workflow = SecAggPlusWorkflow(num_shares=k + 1, reconstruction_threshold=t, clipping_range=1.0)
    TimedFedAvg.aggregate_cpu = 0.0
    start = time.process_time()
    workflow(grid, legacy)
    total = time.process_time() - start
    server = total - sum(grid.client_cpu.values()) - TimedFedAvg.aggregate_cpu - grid.transport_cpu
    uploaders = [nid for nid in updates if nid not in dropped]
    mean = np.mean([updates[nid][0] for nid in uploaders], axis=0)
    result = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
    return {
        "server": server,
        "client_mean": float(np.mean([grid.client_cpu[nid] for nid in uploaders])),
        "client_max": max(grid.client_cpu[nid] for nid in uploaders),
        "up_bytes": max(grid.sent[nid] for nid in uploaders),
        "mean_error": float(np.abs(result - mean).max()),
    }


def main() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, SUPERLINK_NODE_ID, 1
    logging.getLogger("flwr").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 50 x 100k rows")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    if not args.json:
        print(
            f"{'clients x params':>18} {'drop':>5} {'shares':>6} {'t':>3} {'server s':>9} "
            f"{'client s mean/max':>17} {'up MB':>7} {'max |mean err|':>14}"
        )
    for n, dimension, dropout in CONFIGS[:2] if args.quick else CONFIGS:
        row = one_round(n, dimension, dropout)
        k, t = DEGREE[n]
        if args.json:
            print(json.dumps({"clients": n, "dimension": dimension, "dropout": dropout, **row}))
            continue
        print(
            f"{n:>5} x {dimension:>10,} {dropout:>5.0%} {k + 1:>6} {t:>3} {row['server']:>9.3f} "
            f"{row['client_mean']:>8.3f}/{row['client_max']:<8.3f} {row['up_bytes'] / 1e6:>7.3f} "
            f"{row['mean_error']:>14.2e}"
        )


if __name__ == "__main__":
    main()
