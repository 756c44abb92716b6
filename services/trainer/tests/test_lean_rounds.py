"""A trainer process stays lean: its partition is read once, freed heap goes back to the OS,
and a plain CNN round loads none of the heavy optional libraries."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import Event, Phase, Progress, RoundAssigned
from fedbus.storage import InMemoryArtifactStore
from fedbus_executor import DatasetSpec, initial_weights, load_dataset
from fedbus_executor import cache as cache_module
from fedbus_trainer import (
    Deps,
    ExecutorTrainer,
    SubmittedLog,
    load_local_datasets,
    on_round_assigned,
    release_free_memory,
)
from fedbus_trainer import handlers as handlers_module

from .fakes import FakeGrants

RoundFactory = Callable[..., RoundAssigned]


def _deps(client_file: Path) -> Deps:
    return Deps(
        client_id="c1",
        datasets=load_local_datasets({"digits": client_file}),
        artifacts=FakeGrants(InMemoryArtifactStore()),
        publisher=InMemoryBus(),
        submitted=SubmittedLog(),
        device="cpu",
        progress_interval_s=0.0,
    )


async def test_the_partition_is_read_once_across_rounds(
    client_file: Path, round_assigned: RoundFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = load_dataset  # what the cache calls, until patched below

    def counting(path: str | Path, spec: DatasetSpec) -> object:
        reads.append(str(path))
        return real(path, spec)

    monkeypatch.setattr(cache_module, "load_dataset", counting)
    deps = _deps(client_file)
    assert isinstance(deps.train, ExecutorTrainer)

    for round_ in (1, 2):
        out = await on_round_assigned(round_assigned(round=round_), deps=deps)
        assert [e.type for e in out] == ["update.submitted", "progress"]

    assert reads == [str(client_file)]
    assert len(deps.train.datasets) == 1


async def test_freed_memory_is_released_after_each_training_run(
    client_file: Path, round_assigned: RoundFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(handlers_module, "release_free_memory", lambda: calls.append(True))

    await on_round_assigned(round_assigned(), deps=_deps(client_file))

    assert calls == [True]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_memory_works_on_linux() -> None:
    assert release_free_memory() is True


ROUND = """
import asyncio, json, sys
from pathlib import Path
import fedbus_trainer.main
from fedbus.bus import InMemoryBus
from fedbus.storage import InMemoryArtifactStore
from fedbus_trainer import SubmittedLog, Deps, load_local_datasets, on_round_assigned
from fedbus.events import PrivacySpec, RoundAssigned, StrategySpec, TrainingConfig
from fedbus.storage import update_key


class Grants:  # the granted URLs, in memory
    def __init__(self):
        self.store = InMemoryArtifactStore()

    async def get_bytes(self, url, ref):
        return await self.store.get_bytes(ref)

    async def put_bytes(self, url, data, *, key):
        return await self.store.put_at(data, key=key)


optional = {optional!r}
seen = {{"import": [m for m in optional if m in sys.modules]}}
deps = Deps(
    client_id="c1",
    datasets=load_local_datasets({{"digits": Path({data!r})}}),
    artifacts=Grants(),
    publisher=InMemoryBus(),
    submitted=SubmittedLog(),
    device="cpu",
)
key = update_key("job-1", 1, "c1")
event = RoundAssigned.create(
    source="aggregator", job_id="job-1", round=1, client_id="c1", started_event_id="s1",
    deadline="2100-01-01T00:00:00Z", global_model=None, model="cnn", dataset="digits",
    training=TrainingConfig(local_epochs=1, batch_size=32, learning_rate=0.05),
    strategy=StrategySpec(), privacy=PrivacySpec(), seed=42,
    update_url="memory://put/" + key, update_key=key, urls_expire_at="2100-01-01T00:00:00Z",
)
out = asyncio.run(on_round_assigned(event, deps=deps))
assert out[0].type == "update.submitted", out
seen["round"] = [m for m in optional if m in sys.modules]
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_a_cnn_round_imports_no_optional_library(client_file: Path) -> None:
    optional = ["transformers", "peft", "opacus", "pandas"]
    code = ROUND.format(optional=optional, data=str(client_file))

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"import": [], "round": []}


class TransferStore(InMemoryArtifactStore):
    """Marks when a download and an upload have begun."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching = asyncio.Event()
        self.storing = asyncio.Event()

    async def _get(self, key: str) -> bytes:
        self.fetching.set()
        return await super()._get(key)

    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        self.storing.set()
        await super()._put(key, body, sha256=sha256)


class PatientBus(InMemoryBus):
    """Sends ``downloading``/``uploading`` only once that transfer has begun: a handler that
    waited for the event before the transfer would wait here forever."""

    def __init__(self, store: TransferStore) -> None:
        super().__init__()
        self.store = store

    async def publish(self, event: Event) -> None:
        if isinstance(event, Progress) and event.phase is Phase.DOWNLOADING:
            await asyncio.wait_for(self.store.fetching.wait(), 10)
        if isinstance(event, Progress) and event.phase is Phase.UPLOADING:
            await asyncio.wait_for(self.store.storing.wait(), 10)
        await super().publish(event)


async def test_progress_is_sent_while_the_model_downloads_and_the_update_uploads(
    client_file: Path, round_assigned: RoundFactory
) -> None:
    store = TransferStore()
    bus = PatientBus(store)
    deps = _deps(client_file)
    deps.artifacts, deps.publisher = FakeGrants(store), bus
    spec = deps.datasets["digits"].spec
    ref = await store.put_tensors(initial_weights("mlp", 1, spec), prefix="jobs/job-1/round-1/g")
    store.storing.clear()

    out = await on_round_assigned(round_assigned(round=2, global_model=ref), deps=deps)

    assert [e.type for e in out] == ["update.submitted", "progress"]
    phases = [e.phase for e in bus.events("progress") if isinstance(e, Progress)]
    assert phases[0] is Phase.DOWNLOADING
    assert phases[-1] is Phase.UPLOADING
