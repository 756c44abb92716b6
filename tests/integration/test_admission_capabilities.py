"""Admission by what live trainers announce, on the real stack (docs/jobspec.md, Admission).

Two trainers (real processes, each with its own principal) hold an imported tabular dataset
(three features, two classes). They run in a Python environment without the example plugin
package ``fedbus-example-models``: the workspace's packages less that one distribution (a
virtual environment whose site-packages link every entry of the workspace's but the
plugin's), so they really cannot build its ``tabular-mlp``; their heartbeats say so. The
orchestration process, started without any list of models, admits an ``mlp`` job and
rejects, each with a reason naming it and the trainers:

- a model nobody has (``unknown_model``, listing what the trainers announce);
- ``tabular-mlp``, installed here but not on any live trainer (``unknown_model``);
- an option ``mlp`` does not have (``invalid_model_option`` at the option);
- ``cnn`` on the tabular data (``dataset_incompatible``, quoting the trainers' reason).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    Event,
    JobAccepted,
    JobRejected,
    JobRequested,
    JobSpec,
    TrainerHeartbeat,
    load_topics,
)
from fedbus.settings import FedbusSettings

from .harness import (
    EventWatcher,
    ServiceProcess,
    fresh_group,
    import_csv,
    logs_of,
    trainer_env,
    unique,
    wait_for_trainers,
)

pytestmark = pytest.mark.slow

PLUGIN = "fedbus_example_models"
CNN_ON_TABLE = "cnn needs (C, H, W) features, dataset has (3,)"


def _without_plugin(root: Path) -> tuple[Path, list[str]]:
    """A virtual environment with the workspace's packages except the example plugin's.

    Returns its ``python`` and the models it can build (``fedbus_executor.capabilities()``).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"

    def run(code: str) -> str:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              check=True, timeout=120)  # fmt: skip
        return done.stdout.strip()

    theirs = Path(run("import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if PLUGIN not in entry.name:
            (theirs / entry.name).symlink_to(entry)
    listed = run(
        "import json; from fedbus_executor import plugins; "
        "print(json.dumps(sorted(e['name'] for e in plugins.capabilities())))"
    )
    return python, json.loads(listed)


def _trainer(python: Path, client: str, env: dict[str, str], args: list[str],
             log_dir: Path) -> ServiceProcess:  # fmt: skip
    """``python -m fedbus_trainer`` of that environment, as ServiceProcess starts services."""
    log = log_dir / f"{client}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "fedbus_trainer", "--client-id", client, *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    return ServiceProcess(client, proc, log)


def _csv(path: Path, sites: list[str], per_site: int = 60) -> None:
    rng = np.random.default_rng(3)
    lines = ["site,age,bmi,glucose,outcome"]
    for site in sites:
        for _ in range(per_site):
            age, bmi, glucose = rng.normal(0.0, 1.0, 3)
            lines.append(f"{site},{age:.3f},{bmi:.3f},{glucose:.3f},{int(glucose > 0)}")
    path.write_text("\n".join(lines) + "\n")


def _spec(dataset: str, model: str, **more: object) -> JobSpec:
    return JobSpec.model_validate({
        "mode": "federated", "model": model, "dataset": dataset, "rounds": 1,
        "clients_per_round": 2, "min_clients": 2, "round_deadline_seconds": 60,
        "strategy": {"name": "fedavg"}, "privacy": {"mode": "none"}, "seed": 1, **more,
    })  # fmt: skip


async def test_jobs_are_admitted_by_what_the_live_trainers_announce(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    clients = sorted(unique(f"cap-{c}") for c in "ab")
    dataset = unique("vitals")
    _csv(tmp_path / "vitals.csv", clients)
    folder = await import_csv(
        tmp_path / "vitals.csv", tmp_path / "data", dataset, partition_by="site"
    )
    python, there = await asyncio.to_thread(_without_plugin, tmp_path / "no-plugin-venv")
    assert "mlp" in there
    assert "tabular-mlp" not in there  # the environment really lacks the plugin

    await ensure_topics(settings)
    topics = [t.name for t in load_topics().event_topics()]
    group = await fresh_group(settings, unique("admission-orchestration"), topics)
    procs = [
        ServiceProcess.start(
            "orchestration", "fedbus_orchestration", log_dir=tmp_path,
            env={"FEDBUS_CONSUMER_GROUP": group},
        )
    ]  # fmt: skip
    for client in clients:
        env = {**trainer_env(settings, client), "FEDBUS_HTTP_PORT": "0", "PYTHONUNBUFFERED": "1",
               "FEDBUS_HEARTBEAT_SECONDS": "1", "OMP_NUM_THREADS": "1",
               "FEDBUS_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
        args = ["--data", f"{dataset}={folder}", "--device", "cpu"]
        procs.append(_trainer(python, client, env, args, tmp_path))

    def logs() -> str:
        return logs_of(procs)

    watched = ["trainer.heartbeat", "job.accepted", "job.rejected"]
    try:
        async with (
            EventWatcher(settings, watched) as watch,
            EventProducer(settings, client_id=unique("admission-producer")) as producer,
        ):

            async def answer(spec: JobSpec) -> Event:
                request = JobRequested.create(
                    source="it-admission", job_id=unique("job-admission"), tenant="a", spec=spec
                )
                await producer.publish(request)
                return await watch.wait_for(
                    lambda e: (
                        e.job_id == request.job_id and isinstance(e, JobAccepted | JobRejected)
                    ),
                    limit_s=60,
                )

            beats = await wait_for_trainers(watch, procs, clients)
            deadline = time.monotonic() + 180
            for beat in beats.values():  # what each trainer announces
                assert beat.schema_version == TrainerHeartbeat.SCHEMA_VERSION
                assert "tabular-mlp" not in {m.name for m in beat.models}
                [held] = beat.datasets
                assert held.feature_shape == [3]
                assert held.classes == ["0", "1"]
                assert held.manifest_sha256 is not None
                assert "mlp" in held.models
                assert {p.model: p.problem for p in held.problems}["cnn"] == CNN_ON_TABLE

            # Orchestration reads heartbeats beside requests: until it has both trainers, a
            # good job is answered unknown_dataset or too_few_clients; ask until it admits one.
            good = await answer(_spec(dataset, "mlp", model_options={"hidden": [8]}))
            while isinstance(good, JobRejected) and time.monotonic() < deadline:
                assert {r.code for r in good.reasons} <= {"unknown_dataset", "too_few_clients"}
                good = await answer(_spec(dataset, "mlp", model_options={"hidden": [8]}))
            assert isinstance(good, JobAccepted), f"{good}\n{logs()}"

            unknown = await answer(_spec(dataset, "resnet-9000"))
            not_here = await answer(_spec(dataset, "tabular-mlp"))
            option = await answer(_spec(dataset, "mlp", model_options={"hiden": [8]}))
            shape = await answer(_spec(dataset, "cnn"))
    finally:
        for proc in procs:
            proc.stop()

    names = ", ".join(clients)
    announced = "cnn, cnn-batchnorm, minilm-classifier, mlp"
    answers = {"unknown": unknown, "not_here": not_here, "option": option, "shape": shape}
    got = {}
    for label, event in answers.items():
        assert isinstance(event, JobRejected), f"{label}: {event}"
        [reason] = event.reasons
        got[label] = (reason.code, reason.field, reason.message)
        print(label, got[label])  # the messages, with -s
    assert got["unknown"] == ("unknown_model", "spec.model",
        f"no live trainer holding dataset {dataset!r} can build model 'resnet-9000': "
        f"{names} announce {announced}")  # fmt: skip
    assert got["not_here"] == ("unknown_model", "spec.model",
        f"no live trainer holding dataset {dataset!r} can build model 'tabular-mlp': "
        f"{names} announce {announced}")  # fmt: skip
    code, field, message = got["option"]
    assert (code, field) == ("invalid_model_option", "spec.model_options.hiden")
    assert "model 'mlp' has no option 'hiden'" in message
    assert message.endswith(f"(on trainer(s) {names})")
    assert got["shape"] == ("dataset_incompatible", "spec.dataset",
        f"model 'cnn' cannot be built for dataset {dataset!r} on trainer(s) {names}: "
        f"{CNN_ON_TABLE} (feature shape [3], 2 classes)")  # fmt: skip
