"""Admission by what live trainers announce: the pure decision and its reasons."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fedbus.events import (
    DatasetInfo,
    JobMode,
    JobSpec,
    LoraSpec,
    ModelCapability,
    ModelProblem,
    TrainerHeartbeat,
    TrainerStatus,
)
from fedbus_orchestration.admission import capabilities_of, capability_reasons, trainer_problems
from fedbus_orchestration.validation import validate_request

from .fakes import CLOSED, holder

TABULAR: dict[str, Any] = {
    "additionalProperties": False, "type": "object",
    "properties": {"hidden": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                   "dropout": {"type": "number", "minimum": 0.0, "exclusiveMaximum": 1.0}},
}  # fmt: skip
CNN_ON_TABLE = "cnn needs (C, H, W) features, dataset has (8,)"


def reasons(spec: JobSpec, *trainers: Any) -> list[tuple[str, str | None, str]]:
    found = validate_request(spec, job_id="j", known_datasets=(), holders=list(trainers))
    return [(r.code, r.field, r.message) for r in found]


def table(client: str, **kw: Any) -> Any:
    """A trainer holding the tabular dataset 'table' (8 features): mlp and tabular-mlp fit."""
    return holder(
        client, "table", shape=(8,), buildable=["mlp", "tabular-mlp"],
        models={"cnn": CLOSED, "mlp": CLOSED, "tabular-mlp": TABULAR},
        problems={"cnn": CNN_ON_TABLE}, **kw,
    )  # fmt: skip


def test_enough_trainers_that_announce_the_model_admit_it(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(model="tabular-mlp", dataset="table", model_options={"dropout": 0.2})
    assert reasons(spec, table("a"), table("b")) == []


def test_a_model_no_live_trainer_announces_lists_what_they_can_build(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(model="sample-convnet", dataset="table")
    [(code, field, message)] = reasons(spec, table("a"), table("b"))
    assert (code, field) == ("unknown_model", "spec.model")
    assert message == (
        "no live trainer holding dataset 'table' can build model 'sample-convnet': a, b "
        "announce cnn, mlp, tabular-mlp"
    )


def test_an_option_the_announced_schema_refuses_names_option_and_trainers(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(model="tabular-mlp", dataset="table", model_options={"dropout": 1.5})
    [(code, field, message)] = reasons(spec, table("a"), table("b"))
    assert (code, field) == ("invalid_model_option", "spec.model_options.dropout")
    assert "option dropout of model 'tabular-mlp': must be < 1, got 1.5" in message
    assert message.endswith("(on trainer(s) a, b)")


def test_a_model_that_does_not_fit_the_dataset_quotes_the_trainers_problem(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(model="cnn", dataset="table")
    [(code, field, message)] = reasons(spec, table("a"), table("b"))
    assert (code, field) == ("dataset_incompatible", "spec.dataset")
    assert message == (
        "model 'cnn' cannot be built for dataset 'table' on trainer(s) a, b: "
        f"{CNN_ON_TABLE} (feature shape [8], 2 classes)"
    )


def test_too_few_capable_trainers_says_who_can_and_why_the_others_cannot(
    make_spec: Callable[..., JobSpec],
) -> None:
    old = holder("old", "table", models={})  # a heartbeat before version 2 announces nothing
    spec = make_spec(model="tabular-mlp", dataset="table", min_clients=2, clients_per_round=2)
    [(code, field, message)] = reasons(spec, table("a"), old)
    assert (code, field) == ("too_few_clients", "spec.min_clients")
    assert message == (
        "min_clients is 2 but only 1 live trainer(s) holding dataset 'table' can build model "
        "'tabular-mlp' with these options: a; the others: old (unknown_model: does not "
        "announce it)"
    )
    centralized = make_spec(model="tabular-mlp", dataset="table", mode=JobMode.CENTRALIZED,
                            min_clients=1, clients_per_round=None)  # fmt: skip
    assert reasons(centralized, table("a"), old) == []


def test_only_capable_trainers_count(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(model="cnn", dataset="table")
    assert [p.code for p in trainer_problems(table("a"), spec)] == ["dataset_incompatible"]
    assert trainer_problems(table("a"), make_spec(model="mlp", dataset="table")) == []
    assert (
        capability_reasons(make_spec(model="mlp", dataset="table"), [table("a"), table("b")]) == []
    )


def test_a_heartbeat_becomes_what_admission_reads() -> None:
    beat = TrainerHeartbeat.create(
        source="trainer", job_id="", client_id="a", device="cpu", status=TrainerStatus.IDLE,
        capacity=1, interval_seconds=5,
        models=[ModelCapability(name="tabular-mlp", package="fedbus-example-models",
                                version="0.1.0", options_schema=json.dumps(TABULAR))],
        datasets=[DatasetInfo(name="table", num_samples=40, feature_shape=[8], classes=["n", "y"],
                              manifest_sha256="ab" * 32, models=["tabular-mlp"],
                              problems=[ModelProblem(model="cnn", problem=CNN_ON_TABLE)])],
    )  # fmt: skip
    caps = capabilities_of(beat)
    assert caps["models"]["tabular-mlp"]["options_schema"] == TABULAR
    assert caps["datasets"]["table"] == {
        "feature_shape": [8], "classes": ["n", "y"], "manifest_sha256": "ab" * 32,
        "models": ["tabular-mlp"], "problems": {"cnn": CNN_ON_TABLE},
    }  # fmt: skip


def test_a_model_announced_with_a_broken_schema_is_left_out() -> None:
    beat = TrainerHeartbeat.create(
        source="trainer", job_id="", client_id="a", device="cpu", status=TrainerStatus.IDLE,
        capacity=1, interval_seconds=5,
        models=[ModelCapability(name="x", package="p", version="1", options_schema="{oops"),
                ModelCapability(name="y", package="p", version="1", options_schema="[]"),
                ModelCapability(name="mlp", package="p", version="1")],
    )  # fmt: skip
    assert set(capabilities_of(beat)["models"]) == {"mlp"}


MINILM: dict[str, Any] = {
    "additionalProperties": False, "type": "object",
    "properties": {"freeze_encoder": {"type": "boolean"},
                   "max_length": {"type": "integer", "minimum": 1, "maximum": 512}},
}  # fmt: skip


def texts(client: str) -> Any:
    """A trainer holding 'text' whose minilm-classifier declares LoRA targets; mlp declares none."""
    return holder(
        client, "text", shape=(), buildable=["minilm-classifier", "mlp"],
        models={"minilm-classifier": MINILM, "mlp": CLOSED},
        lora_targets={"minilm-classifier": ["query", "key", "value", "dense"]},
    )  # fmt: skip


def test_a_lora_job_on_declared_targets_is_admitted(make_spec: Callable[..., JobSpec]) -> None:
    lora = LoraSpec(r=4, target_modules=["query", "value"])
    spec = make_spec(model="minilm-classifier", dataset="text", lora=lora)
    assert reasons(spec, texts("a"), texts("b")) == []


def test_lora_on_a_model_without_targets_is_rejected_naming_the_model(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(model="mlp", dataset="text", lora=LoraSpec(target_modules=["fc1"]))
    [(code, field, message)] = reasons(spec, texts("a"), texts("b"))
    assert (code, field) == ("lora_unsupported", "spec.lora")
    assert message == (
        "model 'mlp' declares no LoRA targets: it cannot train with LoRA (on trainer(s) a, b)"
    )


def test_a_lora_target_the_model_does_not_declare_is_rejected(
    make_spec: Callable[..., JobSpec],
) -> None:
    lora = LoraSpec(target_modules=["query", "attention"])
    spec = make_spec(model="minilm-classifier", dataset="text", lora=lora)
    [(code, field, message)] = reasons(spec, texts("a"), texts("b"))
    assert (code, field) == ("invalid_lora_target", "spec.lora.target_modules")
    assert message.startswith(
        "'attention' not among the LoRA targets model 'minilm-classifier' declares: "
        "query, key, value, dense"
    )


def test_the_heartbeat_s_lora_targets_are_kept() -> None:
    beat = TrainerHeartbeat.create(
        source="trainer", job_id="", client_id="a", device="cpu",
        status=TrainerStatus.IDLE, capacity=1, interval_seconds=2,
        models=[ModelCapability(name="minilm-classifier", package="p", version="1",
                                lora_targets=["query", "value"])],
    )  # fmt: skip
    kept = capabilities_of(beat)["models"]["minilm-classifier"]
    assert kept["lora_targets"] == ["query", "value"]


def test_the_federated_lora_example_is_admitted_by_trainers_announcing_minilm() -> None:
    path = Path(__file__).resolve().parents[3] / "examples" / "text-lora-federated.yaml"
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    live = [texts(f"t{i}") for i in range(spec.min_clients)]

    assert reasons(spec, *live) == []
    assert reasons(spec, *live[:-1])[0][0] == "too_few_clients"
