"""``POST /v1/models/{name}/versions/{v}:predict`` over the fake registry, with a real CNN."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.models import build_model
from fedbus_executor.weights import state_dict_to_bytes
from fedbus_gateway.predict import KNOWN_DATASETS, Predictor

if TYPE_CHECKING:
    from .conftest import Env

MNIST = DatasetSpec(name="mnist", feature_shape=(1, 28, 28), classes=tuple("0123456789"))
URL = "/v1/models/cnn-mnist/versions/1:predict"
PRIVACY = {"mode": "central_dp", "epsilon": 3.5, "delta": 1e-5, "accountant": "rdp"}


def cnn_weights(seed: int = 0) -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(seed)
    model = build_model("cnn", MNIST).eval()
    return model, state_dict_to_bytes(model.state_dict())


def register(env: Env, tenant: str, data: bytes, *, dataset: str = "mnist", sha: str = "") -> None:
    version = {
        "name": "cnn-mnist", "version": 1,
        "artifact": {"object_key": "k", "size_bytes": len(data),
                     "sha256": sha or hashlib.sha256(data).hexdigest()},
        "privacy": PRIVACY,
    }  # fmt: skip
    env.registry.models[(tenant, "cnn-mnist")] = [version]
    env.registry.artifacts[(tenant, "cnn-mnist", 1)] = (data, "cnn", dataset)


@pytest.fixture
def predicting(env: Env) -> Env:
    """The env; its keys have every scope (``models:predict`` included) but ``acme-reader``."""
    return env


def images(n: int, seed: int = 1) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


async def test_labels_and_probabilities_are_the_registered_models_with_its_privacy(
    predicting: Env,
) -> None:
    model, data = cnn_weights()
    register(predicting, "acme", data)
    rows = images(3)

    response = await predicting.client.post(
        URL, json={"inputs": rows.tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 200, response.text
    body = response.json()
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(rows)), dim=1).numpy()
    np.testing.assert_allclose(np.array(body["probabilities"]), expected, rtol=1e-4, atol=1e-6)
    assert body["labels"] == [str(i) for i in expected.argmax(axis=1)]
    assert body["classes"] == list("0123456789")
    assert (body["model"], body["version"]) == ("cnn-mnist", 1)
    assert body["privacy"] == {"mode": "central_dp", "epsilon": 3.5, "delta": 1e-5}


async def test_flat_rows_give_the_same_answer(predicting: Env) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data)
    rows = images(2)

    shaped = await predicting.client.post(URL, json={"inputs": rows.tolist()},
                                          headers=predicting.auth("acme"))  # fmt: skip
    flat = await predicting.client.post(URL, json={"inputs": rows.reshape(2, -1).tolist()},
                                        headers=predicting.auth("acme"))  # fmt: skip

    assert flat.json()["probabilities"] == shaped.json()["probabilities"]


async def test_another_tenants_model_is_404_and_the_registry_was_asked_for_the_caller(
    predicting: Env,
) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data)

    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("globex")
    )

    assert response.status_code == 404
    assert {r.url.params["tenant"] for r in predicting.registry.requests} == {"globex"}


async def test_predicting_needs_models_predict(predicting: Env) -> None:
    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("acme-reader")
    )

    assert response.status_code == 403
    assert "models:predict" in response.json()["detail"]


async def test_bad_inputs_are_422_or_413_saying_what_the_model_expects(predicting: Env) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data)
    auth = predicting.auth("acme")

    shape = await predicting.client.post(URL, json={"inputs": [[0.0] * 783]}, headers=auth)
    text = await predicting.client.post(URL, json={"inputs": [["x"] * 784]}, headers=auth)
    nan = await predicting.client.post(
        URL,
        content=b'{"inputs": [[' + b"0," * 783 + b"NaN]]}",
        headers={**auth, "Content-Type": "application/json"},
    )
    many = await predicting.client.post(URL, json={"inputs": [[0] * 784] * 257}, headers=auth)
    extra = await predicting.client.post(URL, json={"inputs": [[0] * 784], "x": 1}, headers=auth)

    assert shape.status_code == 422
    assert shape.json()["detail"] == (
        "inputs: expected rows of shape [1, 28, 28] (or 784 numbers each, flat), got rows of "
        "shape [783]"
    )
    assert shape.json()["errors"][0]["field"] == "body.inputs"
    assert text.status_code == 422
    assert "expected numbers, got text" in text.json()["detail"]
    assert nan.status_code == 422
    assert "row 0 has a value that is not a finite float32" in nan.json()["detail"]
    assert many.status_code == 413
    assert "at most 256 rows per request" in many.json()["detail"]
    assert extra.status_code == 422


async def test_weights_whose_sha256_is_not_the_registered_one_are_refused(
    predicting: Env,
) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data, sha="0" * 64)

    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 502
    assert "is not the registered" in response.json()["detail"]


async def test_a_dataset_the_gateway_has_no_facts_for_is_501_naming_the_setting(
    predicting: Env,
) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data, dataset="hospital-xrays")

    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 501
    assert "'hospital-xrays'" in response.json()["detail"]
    assert "FEDBUS_GATEWAY_PREDICT_DATASETS" in response.json()["detail"]


async def test_a_gateway_without_torch_answers_501_saying_so(
    predicting: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if not installed

    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 501
    assert response.json()["detail"] == (
        "predictions need torch and fedbus-executor installed beside the gateway (torch is missing)"
    )


async def test_weights_that_do_not_fit_the_model_are_500_saying_so(predicting: Env) -> None:
    torch.manual_seed(0)
    other = build_model("cnn", MNIST.model_copy(update={"classes": tuple("01234")}))
    register(predicting, "acme", state_dict_to_bytes(other.state_dict()))

    response = await predicting.client.post(
        URL, json={"inputs": images(1).tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 500
    assert "do not fit the model" in response.json()["detail"]


async def test_the_jobs_model_options_build_the_model(predicting: Env) -> None:
    torch.manual_seed(0)
    small = build_model("cnn", MNIST, channels=16, hidden=32).eval()
    register(predicting, "acme", state_dict_to_bytes(small.state_dict()))
    predicting.registry.model_options[("acme", "cnn-mnist", 1)] = {"channels": 16, "hidden": 32}
    rows = images(2)

    response = await predicting.client.post(
        URL, json={"inputs": rows.tolist()}, headers=predicting.auth("acme")
    )

    assert response.status_code == 200, response.text
    with torch.inference_mode():
        expected = torch.softmax(small(torch.from_numpy(rows)), dim=1).numpy()
    np.testing.assert_allclose(np.array(response.json()["probabilities"]), expected, rtol=1e-4)


async def test_a_version_is_loaded_once_for_concurrent_requests_and_batched(
    predicting: Env,
) -> None:
    _, data = cnn_weights()
    register(predicting, "acme", data)
    predictor = Predictor(predicting.gateway.registry, batch_wait_s=0.05)
    predicting.gateway.predictor = predictor

    responses = await asyncio.gather(*(
        predicting.client.post(URL, json={"inputs": images(1, seed=i).tolist()},
                               headers=predicting.auth("acme"))
        for i in range(8)
    ))  # fmt: skip

    assert [r.status_code for r in responses] == [200] * 8
    assert predictor.loads == 1
    artifact_fetches = [r for r in predicting.registry.requests if r.url.path.endswith("artifact")]
    assert len(artifact_fetches) == 1
    served = await predictor.version("acme", "cnn-mnist", 1)
    assert sum(served.batcher.batches) == 8
    assert len(served.batcher.batches) < 8


async def test_the_cache_keeps_the_most_recently_used_versions(predicting: Env) -> None:
    _, data = cnn_weights()
    for tenant in ("acme", "globex"):
        register(predicting, tenant, data)
    predictor = Predictor(predicting.gateway.registry, capacity=1)

    await predictor.version("acme", "cnn-mnist", 1)
    await predictor.version("acme", "cnn-mnist", 1)
    await predictor.version("globex", "cnn-mnist", 1)
    await predictor.version("acme", "cnn-mnist", 1)

    assert predictor.loads == 3  # acme, globex (acme unloaded), acme again


def test_the_known_datasets_are_those_fedbus_data_prepare_makes() -> None:
    from fedbus_executor.sources import FASHION_CLASSES, load_digits

    digits = load_digits()
    assert KNOWN_DATASETS["digits"].feature_shape == digits.feature_shape
    assert KNOWN_DATASETS["digits"].classes == digits.classes
    assert KNOWN_DATASETS["fashion-mnist"].classes == FASHION_CLASSES
    assert KNOWN_DATASETS["mnist"].feature_shape == MNIST.feature_shape
