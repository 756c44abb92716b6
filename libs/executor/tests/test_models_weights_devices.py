"""Model registry, safetensors round-trip, device selection with fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedbus_executor import (
    DataRef,
    DatasetSpec,
    ModelError,
    ModelRef,
    TrainingExecutor,
    TrainingTask,
    available_models,
    build_model,
    bytes_to_state_dict,
    select_device,
    sha256_hex,
    state_dict_to_bytes,
    write_parquet,
)
from fedbus_executor.devices import is_device_failure
from fedbus_executor.training import eval_layout, evaluate_module

MNIST = DatasetSpec(name="m", feature_shape=(1, 28, 28), classes=tuple("0123456789"))


def test_registry_lists_builtin_models() -> None:
    assert {"cnn", "mlp", "minilm-classifier"} <= set(available_models())


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_image_models_map_batch_to_logits(name: str) -> None:
    model = build_model(name, MNIST)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_cnn_uses_groupnorm_not_batchnorm() -> None:
    model = build_model("cnn", MNIST)
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)


def test_unknown_model_and_bad_kwargs_are_refused() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet'"):
        build_model("resnet", MNIST)
    with pytest.raises(ModelError, match=r"bad options for model 'cnn': depth"):
        build_model("cnn", MNIST, depth=3)


def test_safetensors_round_trip_keeps_names_values_and_hash() -> None:
    torch.manual_seed(0)
    state = build_model("cnn", MNIST).state_dict()
    data = state_dict_to_bytes(state)

    back = bytes_to_state_dict(data, expected_sha256=sha256_hex(data))

    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    assert state_dict_to_bytes(back) == data  # same tensors, same bytes, same hash


def test_hash_mismatch_and_garbage_are_refused() -> None:
    data = state_dict_to_bytes({"w": torch.ones(3)})
    with pytest.raises(ModelError, match="hash mismatch"):
        bytes_to_state_dict(data, expected_sha256="0" * 64)
    with pytest.raises(ModelError, match="not valid safetensors"):
        bytes_to_state_dict(b"\x80\x04pickle")


class FakeProbe:
    """Hardware as a test wants it."""

    def __init__(self, *, cuda: bool = False, mps: bool = False, error: str | None = None):
        self.cuda, self.mps, self.error = cuda, mps, error

    def cuda_available(self) -> bool:
        return self.cuda

    def mps_available(self) -> bool:
        return self.mps

    def check(self, device: torch.device) -> None:
        if self.error:
            raise RuntimeError(self.error)


def test_failing_cuda_falls_back_to_cpu_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    probe = FakeProbe(cuda=True, error="CUDA error: initialization error")
    choice = select_device("cuda", probe=probe)
    assert choice.device == torch.device("cpu")
    assert choice.fallback_reason is not None
    assert "initialization error" in choice.fallback_reason
    assert "falling back to cpu" in caplog.text


def test_absent_cuda_falls_back_and_auto_prefers_cuda_then_mps() -> None:
    assert select_device("cuda:1", probe=FakeProbe()).fallback_reason == "cuda is not available"
    assert select_device("auto", probe=FakeProbe(cuda=True, mps=True)).device.type == "cuda"
    assert select_device("auto", probe=FakeProbe(mps=True)).device.type == "mps"
    auto_cpu = select_device("auto", probe=FakeProbe())
    assert auto_cpu.device.type == "cpu"
    assert auto_cpu.fallback_reason is None


def test_device_failures_are_recognised() -> None:
    assert is_device_failure(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_device_failure(RuntimeError("CUDA error: device-side assert"))
    assert not is_device_failure(RuntimeError("shape mismatch"))


class CudaClaimingProbe(FakeProbe):
    """Says CUDA works although this machine has none: training then fails on it."""

    def __init__(self) -> None:
        super().__init__(cuda=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_failure_during_training_reruns_on_cpu(tmp_path: Path) -> None:
    spec = DatasetSpec(name="t", feature_shape=(4,), classes=("a", "b"))
    path = tmp_path / "t.parquet"
    write_parquet(
        path, spec, labels=np.asarray([0, 1] * 8), features=np.eye(16, 4, dtype=np.float32)
    )
    task = TrainingTask(
        model=ModelRef(name="mlp", kwargs={"hidden": [4]}),
        data=DataRef(path=str(path), spec=spec),
        device="cuda",
    )

    result = TrainingExecutor(probe=CudaClaimingProbe()).train(task)

    assert result.metrics.device == "cpu"
    assert result.device_fallback_reason is not None
    assert result.device_fallback_reason.startswith("cuda")


def test_evaluation_layout_is_channels_last_only_for_conv_models_on_images() -> None:
    images = (torch.zeros(2, 1, 28, 28),)
    assert eval_layout(build_model("cnn", MNIST), images) == torch.channels_last
    assert eval_layout(build_model("mlp", MNIST), images) == torch.contiguous_format
    tokens = (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    assert eval_layout(build_model("cnn", MNIST), tokens) == torch.contiguous_format


def test_channels_last_evaluation_scores_as_the_default_layout() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", MNIST)
    x, y = torch.rand(96, 1, 28, 28), torch.randint(0, 10, (96,))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    cpu = torch.device("cpu")

    plain = evaluate_module(model, loader, device=cpu)
    nhwc = evaluate_module(
        model.to(memory_format=torch.channels_last),
        loader,
        device=cpu,
        memory_format=torch.channels_last,
    )

    assert nhwc[1:] == plain[1:]
    assert nhwc[0] == pytest.approx(plain[0], rel=1e-5)
