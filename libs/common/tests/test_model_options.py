"""``model_options`` and the optimizer fields of a job spec: types kept on the wire, rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fedbus.events import JobRequested, JobSpec, LrSchedule, Optimizer, TrainingConfig
from fedbus.events.codec import decode, encode
from fedbus.jobspec import MAX_OPTIONS, check_spec


def spec(**fields: Any) -> dict[str, Any]:
    return {"mode": "federated", "model": "cnn", "dataset": "mnist", "rounds": 3, **fields}


def found(raw: object) -> list[tuple[str, str]]:
    return [(p.code.value, p.field) for p in check_spec(raw)]


OPTIONS = {
    "hidden": [64, 32],
    "dropout": 0.25,
    "width": 3,
    "scale": 3.0,
    "freeze": True,
    "activation": "gelu",
    "pretrained": None,
    "mixed": [1, 2.5, "x", False],
}


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_model_options_keep_each_value_and_its_type_on_the_wire(fmt: str) -> None:
    event = JobRequested.create(
        source="test", job_id="job-1", tenant="acme",
        spec=JobSpec.model_validate(spec(model_options=OPTIONS)),
    )  # fmt: skip

    back = decode(encode(event, fmt))

    assert isinstance(back, JobRequested)
    assert back.spec.model_options == OPTIONS
    kinds = {k: type(v).__name__ for k, v in back.spec.model_options.items()}
    assert kinds == {
        "hidden": "list", "dropout": "float", "width": "int", "scale": "float",
        "freeze": "bool", "activation": "str", "pretrained": "NoneType", "mixed": "list",
    }  # fmt: skip
    assert [type(v).__name__ for v in back.spec.model_options["mixed"]] == [  # type: ignore[union-attr]
        "int", "float", "str", "bool",
    ]  # fmt: skip


def test_a_spec_without_the_new_fields_means_what_it_meant() -> None:
    parsed = JobSpec.model_validate(spec())

    assert parsed.model_options == {}
    assert parsed.training == TrainingConfig(
        optimizer=Optimizer.SGD, momentum=0.0, nesterov=False, weight_decay=0.0,
        lr_schedule=LrSchedule.CONSTANT,
    )  # fmt: skip
    assert check_spec(spec()) == []


def test_a_good_optimizer_and_schedule_are_accepted() -> None:
    training = {
        "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "lr_schedule": "cosine", "lr_min": 0.001, "learning_rate": 0.1,
    }  # fmt: skip

    assert check_spec(spec(training=training, model_options={"channels": 16})) == []
    assert check_spec(spec(training={"optimizer": "adamw", "weight_decay": 0.01})) == []
    assert check_spec(spec(training={"lr_schedule": "step", "lr_step_epochs": 2})) == []


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"momentum": 1.0}, "spec.training.momentum"),
        ({"momentum": -0.1}, "spec.training.momentum"),
        ({"weight_decay": -1.0}, "spec.training.weight_decay"),
        ({"lr_gamma": 0.0}, "spec.training.lr_gamma"),
        ({"lr_gamma": 1.5}, "spec.training.lr_gamma"),
        ({"lr_step_epochs": 0}, "spec.training.lr_step_epochs"),
        ({"lr_min": -0.1}, "spec.training.lr_min"),
        ({"nesterov": True}, "spec.training.nesterov"),
        ({"optimizer": "adam", "momentum": 0.9}, "spec.training.momentum"),
        ({"lr_schedule": "cosine", "lr_min": 0.5}, "spec.training.lr_min"),
    ],
)
def test_a_bad_optimizer_setting_is_named(training: dict[str, Any], field: str) -> None:
    assert found(spec(training=training)) == [("invalid_value", field)]


def test_an_unknown_optimizer_or_schedule_is_a_type_error_at_its_field() -> None:
    assert found(spec(training={"optimizer": "lbfgs"})) == [
        ("invalid_value", "spec.training.optimizer")
    ]
    assert [f for _, f in found(spec(training={"lr_schedule": "linear"}))] == [
        "spec.training.lr_schedule"
    ]


def test_model_options_of_the_wrong_shape_are_refused_at_their_name() -> None:
    nested = found(spec(model_options={"layers": {"a": 1}}))
    too_many = found(spec(model_options={f"o{i}": i for i in range(MAX_OPTIONS + 1)}))
    long_list = found(spec(model_options={"hidden": list(range(65))}))

    assert nested
    assert all(field.startswith("spec.model_options.layers") for _, field in nested)
    assert too_many == [("invalid_value", "spec.model_options")]
    assert long_list == [("invalid_value", "spec.model_options.hidden")]


def test_the_json_schema_describes_model_options() -> None:
    from fedbus.jobspec import spec_json_schema

    schema = spec_json_schema()["properties"]["model_options"]

    assert schema["type"] == "object"
    assert schema["maxProperties"] == MAX_OPTIONS
    assert json.dumps(schema)  # JSON-able, for the gateway's OpenAPI document
