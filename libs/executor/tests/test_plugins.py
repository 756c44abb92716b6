"""Models come from the entry-point group ``fedbus.models``, the built-in ones included."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch

from fedbus.jobspec import model_options_problems
from fedbus_executor import (
    DatasetSpec,
    ModelError,
    ModelOptionsError,
    available_models,
    build_model,
    capabilities,
    get_model_entry,
    model_problems,
    plugin_errors,
    plugins,
    validate_options,
)

MNIST = DatasetSpec(name="mnist", feature_shape=(1, 28, 28), classes=tuple("0123456789"))
TEXT = DatasetSpec(name="news", kind="text", classes=("a", "b"))
BUILT_IN = {"cnn", "cnn-batchnorm", "mlp", "minilm-classifier"}


def test_built_in_models_are_entry_points_of_fedbus_executor() -> None:
    declared = {
        ep.name: ep.dist.metadata["Name"] if ep.dist else None
        for ep in metadata.entry_points(group="fedbus.models")
    }
    version = metadata.version("fedbus-executor")

    for name in BUILT_IN:
        entry = get_model_entry(name)
        assert declared[name] == "fedbus-executor"
        assert (entry.distribution, entry.version) == ("fedbus-executor", version)
    assert set(available_models()) >= BUILT_IN


def test_options_are_validated_by_the_plugin_schema_and_named() -> None:
    assert validate_options("cnn", {}).model_dump() == {"channels": 32, "hidden": 128}
    assert validate_options("mlp", {"hidden": [16]}).model_dump() == {"hidden": (16,)}

    with pytest.raises(ModelOptionsError) as info:
        validate_options("cnn", {"chanels": 16, "hidden": 0})

    assert {p.option for p in info.value.problems} == {"chanels", "hidden"}
    assert "bad options for model 'cnn'" in str(info.value)


def test_model_problems_name_the_model_the_option_and_the_shape() -> None:
    assert model_problems("cnn", {"channels": 16}, MNIST) == []
    assert model_problems("minilm-classifier", {}, TEXT) == []

    (unknown,) = model_problems("resnet-9000")
    assert unknown.option is None
    assert "unknown model 'resnet-9000'" in unknown.message
    (option,) = model_problems("cnn", {"channels": 12})
    assert option.option == "channels"
    (shape,) = model_problems(
        "cnn", {}, DatasetSpec(name="rows", feature_shape=(8,), classes=("a", "b"))
    )
    assert "cnn needs (C, H, W) features" in shape.message
    (kind,) = model_problems("minilm-classifier", {}, MNIST)
    assert "needs a text dataset" in kind.message


def test_the_model_is_built_with_its_options() -> None:
    model = build_model("cnn", MNIST, channels=16, hidden=64)

    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model.head[1].out_features == 64  # type: ignore[index, union-attr]


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, extra: list[metadata.EntryPoint]) -> None:
    real = metadata.entry_points

    def entry_points(**select: str) -> list[metadata.EntryPoint]:
        return [*real(**select), *extra]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.setattr(plugins, "_STATE", plugins._Registry())


def test_a_plugin_that_fails_to_load_is_listed_with_its_error_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _with_entry_points(
        monkeypatch,
        [
            metadata.EntryPoint("broken", "no_such_module_here:PLUGIN", "fedbus.models"),
            metadata.EntryPoint("not-a-plugin", "math:pi", "fedbus.models"),
            metadata.EntryPoint("cnn", "fedbus_executor.models:MLP", "fedbus.models"),
        ],
    )

    names = available_models()
    errors = {e.entry_point: e.error for e in plugin_errors()}

    assert set(names) >= BUILT_IN
    assert "broken" not in names
    assert "ModuleNotFoundError" in errors["broken"]
    assert "not a model plugin" in errors["not-a-plugin"]
    assert "names a plugin called 'mlp'" in errors["cnn"]
    assert get_model_entry("cnn").plugin.name == "cnn"  # the first provider stays
    with pytest.raises(ModelError, match="its plugin failed to load: ModuleNotFoundError"):
        get_model_entry("broken")
    assert any("model plugin broken" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    plugins.reload_plugins()


def test_register_model_adds_a_model_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_LOCAL", {})

    @plugins.register_model("tiny-linear")
    def tiny(spec: DatasetSpec, *, width: int = 4) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, spec.num_classes))

    assert "tiny-linear" in available_models()
    assert build_model("tiny-linear", MNIST, width=3)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ModelError, match="bad arguments"):
        build_model("tiny-linear", MNIST, depth=3)


CASES: dict[str, list[dict[str, object]]] = {
    "cnn": [
        {},
        {"channels": 16, "hidden": 64},
        {"channels": 12},
        {"channels": 0},
        {"hidden": 0},
        {"hidden": "x"},
        {"hidden": 1.5},
        {"hidden": 2.0},
        {"chanels": 16},
        {"channels": True},
        {"hidden": None},
    ],
    "cnn-batchnorm": [{}, {"width": 3}],
    "mlp": [{"hidden": [16]}, {"hidden": [16, "a"]}, {"hidden": 5}, {"hidden": []}],
    "minilm-classifier": [
        {"max_length": 600},
        {"max_length": 0},
        {"freeze_encoder": 1},
        {"freeze_encoder": True},
    ],
    "tabular-mlp": [
        {"dropout": 1.0},
        {"dropout": 0.5},
        {"dropout": 0},
        {"hidden": []},
        {"hidden": list(range(1, 10))},
        {"hidden": [8, 4]},
        {"hidden": [8, 4.5]},
    ],
    "sample-convnet": [{}, {"channels": 3}],
}


@pytest.mark.parametrize(
    ("model", "options"),
    [(m, o) for m, cases in CASES.items() for o in cases],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_the_torch_free_check_agrees_with_the_plugin(
    model: str, options: dict[str, object]
) -> None:
    schema = {c["name"]: c for c in capabilities()}[model]["options_schema"]

    problems = model_options_problems(model, options, schema)
    try:
        validate_options(model, options)
        refused: set[str | None] = set()
    except ModelOptionsError as exc:
        refused = {p.option for p in exc.problems}

    assert {p.field.rsplit(".", 1)[-1] for p in problems} == refused


def test_capabilities_name_package_version_and_options_schema() -> None:
    found = {c["name"]: c for c in capabilities()}

    assert found["cnn"]["package"] == "fedbus-executor"
    assert found["cnn"]["options_schema"]["properties"]["channels"]["default"] == 32
    assert found["minilm-classifier"]["lora_targets"] == ["query", "key", "value", "dense"]
    assert json.loads(json.dumps(found)) == found
