"""A federated LoRA job on the real stack: MiniLM on the text task, adapter-only updates.

Two trainers (real processes) hold a slice of the Debian package descriptions each; a raw
``job.requested`` asks for LoRA (r 4 on query and value, the head trained in full) for two
rounds at 8 tokens. The job completes; every update in MinIO holds only adapter and head
tensors, a small fraction of the full model's bytes; ``round.completed`` names the base
model and the SHA-256 of its weights (as computed here); and the final adapters merged into
the base (PEFT ``merge_and_unload``) give a plain MiniLM state dict that predicts what
base + adapters predict.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from fedbus.bus import EventProducer
from fedbus.events import (
    JobCompleted,
    JobFailed,
    JobRequested,
    JobSpec,
    RoundCompleted,
    UpdateSubmitted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore
from fedbus_executor import (
    DataRef,
    LoRASettings,
    PrepareOptions,
    base_weights_sha256,
    build_model,
    merged_weights,
    prepare_dataset,
    seeded_model,
    state_dict_to_bytes,
)

from .harness import (
    EventWatcher,
    ServiceProcess,
    logs_of,
    start_coordination,
    trainer_env,
    unique,
    wait_for_trainers,
)

# MiniLM in three processes: minutes of CPU, so `make test-heavy` runs it, not `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

ROUNDS = 2
SEED = 11
LORA = {"r": 4, "alpha": 8, "target_modules": ["query", "value"], "trainable_modules": ["head"]}


def _spec(dataset: str) -> dict[str, object]:
    return {
        "mode": "federated", "model": "minilm-classifier", "model_options": {"max_length": 8},
        "dataset": dataset, "rounds": ROUNDS, "clients_per_round": 2, "min_clients": 2,
        "round_deadline_seconds": 300,
        "training": {"local_epochs": 1, "batch_size": 16, "learning_rate": 0.003,
                     "optimizer": "adamw"},
        "privacy": {"mode": "none"}, "lora": LORA, "seed": SEED,
    }  # fmt: skip


async def test_a_lora_job_completes_with_adapter_only_updates(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    clients = [unique(f"lora-{c}") for c in "ab"]
    dataset = unique("text")
    options = PrepareOptions(num_clients=2, limit=64, test_fraction=0.05)
    folder = await asyncio.to_thread(
        lambda: prepare_dataset("text", tmp_path / "data", options).root
    )
    procs = await start_coordination(
        settings, tmp_path, "lora", f"{dataset}={folder / 'test.parquet'}"
    )
    for i, client in enumerate(clients):
        part = folder / "clients" / f"client-{i:03d}.parquet"
        procs.append(
            ServiceProcess.start(
                client, "fedbus_trainer", log_dir=tmp_path,
                args=["--client-id", client, "--data", f"{dataset}={part}", "--device", "cpu"],
                base_env=trainer_env(settings, client),
                env={"FEDBUS_HEARTBEAT_SECONDS": "1", "OMP_NUM_THREADS": "1",
                     "FEDBUS_STATE_DIR": str(tmp_path / "state")},
            )
        )  # fmt: skip

    def logs() -> str:
        return logs_of(procs)

    watched = ["trainer.heartbeat", "update.submitted", "round.completed"]
    watched += ["job.completed", "job.failed", "job.rejected"]
    try:
        async with EventWatcher(settings, watched) as watch:
            await wait_for_trainers(watch, procs, clients, limit_s=240)
            job = JobRequested.create(
                source="it-raw-producer", job_id=unique("job-lora"), tenant="a",
                spec=JobSpec.model_validate(_spec(dataset)),
            )  # fmt: skip
            async with EventProducer(settings, client_id=unique("raw-producer")) as producer:
                await producer.publish(job)
            end = await watch.wait_for(
                lambda e: e.job_id == job.job_id and isinstance(e, JobCompleted | JobFailed),
                limit_s=600,
            )
            seen = [e for e in watch.seen if e.job_id == job.job_id]
    finally:
        for proc in procs:
            proc.stop()

    assert isinstance(end, JobCompleted), f"{end}\n{logs()}"
    assert end.rounds_completed == ROUNDS
    assert end.final_model is not None
    print(f"{job.job_id}: {end.metrics}")  # the figures, with -s
    store = S3ArtifactStore.from_settings(settings)
    spec = DataRef(path=str(folder / "test.parquet")).resolve_spec()
    lora = LoRASettings.model_validate(LORA)
    full_bytes = len(state_dict_to_bytes(build_model("minilm-classifier", spec).state_dict()))

    updates = [e for e in seen if isinstance(e, UpdateSubmitted)]
    assert len(updates) == 2 * ROUNDS
    for update in updates:
        tensors = await store.get_tensors(update.update)
        assert tensors
        assert all(".lora_" in k or ".head." in k for k in tensors), sorted(tensors)
        assert update.update.size_bytes < full_bytes / 100, (update.update.size_bytes, full_bytes)

    rounds = [e for e in seen if isinstance(e, RoundCompleted)]
    sha = base_weights_sha256("minilm-classifier", SEED, spec, lora=lora, max_length=8)
    assert {(r.base_model.name, r.base_model.sha256) for r in rounds if r.base_model} == {
        ("minilm-classifier", sha)
    }
    assert len(rounds) == ROUNDS

    final = await store.get_tensors(end.final_model)
    adapters = {k: torch.from_numpy(v.copy()) for k, v in final.items()}
    merged = merged_weights("minilm-classifier", SEED, spec, adapters, lora=lora, base_sha256=sha)
    plain = build_model("minilm-classifier", spec)
    plain.load_state_dict(merged, strict=True)
    _, adapted = seeded_model("minilm-classifier", SEED, spec, lora=lora)
    adapted.load_state_dict(adapters, strict=False)
    ids = torch.randint(0, 30000, (6, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    plain.eval()
    adapted.eval()
    with torch.no_grad():
        assert torch.allclose(plain(ids, mask), adapted(ids, mask), atol=1e-4)
