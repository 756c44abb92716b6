"""Training: determinism, metrics, progress, DP facts, FedProx, starting weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fedbus_executor import (
    DataRef,
    DPSettings,
    ModelRef,
    PrivacyConfigError,
    ProgressEvent,
    TrainingExecutor,
    TrainingTask,
    plugins,
)
from fedbus_executor.bookkeeping import BookKeepingClipper
from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.models import build_model, register_model


def _task(root: Path, **updates: object) -> TrainingTask:
    base = TrainingTask(
        model=ModelRef(name="mlp", kwargs={"hidden": [32]}),
        data=DataRef(path=str(root / "train.parquet")),
        epochs=1,
        batch_size=64,
        learning_rate=0.1,
        momentum=0.9,
        seed=3,
        device="cpu",
    )
    return base.model_copy(update=updates)


def test_same_seed_same_weights_other_seed_differs(digits_root: Path) -> None:
    ex = TrainingExecutor()
    a, b = ex.train(_task(digits_root)), ex.train(_task(digits_root))
    c = ex.train(_task(digits_root, seed=4))
    assert a.weights_bytes() == b.weights_bytes()
    assert a.metrics.loss == b.metrics.loss
    assert a.weights_bytes() != c.weights_bytes()


def test_dp_noise_does_not_follow_from_the_seed(digits_root: Path) -> None:
    # Same task and seed twice: the noise (and Poisson sampling) must differ, or anyone who
    # knows the job's seed could re-draw and subtract it. Without DP the bytes are equal.
    ex = TrainingExecutor()
    dp = _task(digits_root, dp=DPSettings(noise_multiplier=1.0))
    first, again = ex.train(dp), ex.train(dp)
    plain = [ex.train(_task(digits_root)), ex.train(_task(digits_root))]

    assert first.weights_bytes() != again.weights_bytes()
    assert plain[0].weights_bytes() == plain[1].weights_bytes()
    assert first.privacy == again.privacy  # the same accounting either way
    seeded = TrainingExecutor(dp_generator=lambda: torch.Generator().manual_seed(1))
    assert seeded.train(dp).weights_bytes() == seeded.train(dp).weights_bytes()  # tests only


def test_result_has_delta_metrics_and_learns(digits_root: Path) -> None:
    ex = TrainingExecutor()
    events: list[ProgressEvent] = []
    task = _task(digits_root, epochs=2, progress_every=5)
    result = ex.train(task, progress=events.append)
    start = ex.train(_task(digits_root, epochs=1, learning_rate=1e-9))  # ~untrained weights

    assert result.num_samples == 1438
    assert result.metrics.device == "cpu"
    assert result.metrics.duration_s > 0
    assert result.metrics.steps == 2 * 23
    for name, tensor in result.delta.items():
        assert torch.allclose(start.weights[name] + tensor, result.weights[name], atol=1e-4)
    test = ex.evaluate(
        model=task.model,
        weights=result.weights_bytes(),
        data=DataRef(path=str(digits_root / "test.parquet")),
    )
    assert test.accuracy > 0.8
    assert test.num_samples == 359
    phases = [e.phase for e in events]
    assert phases.count("epoch_end") == 2
    steps = [e.details["step"] for e in events if e.phase == "train"]
    assert steps == [5, 10, 15, 20, 23] * 2
    assert phases[-1] == "done"


def test_dp_facts_reported_and_epsilon_within_target(digits_root: Path) -> None:
    task = _task(digits_root, epochs=2, dp=DPSettings(target_epsilon=2.0, delta=1e-5))
    result = TrainingExecutor().train(task)

    privacy = result.privacy
    assert privacy is not None
    assert 0 < privacy.epsilon <= 2.0
    assert privacy.epsilon > 1.9  # calibrated, not wildly over-noised
    assert privacy.steps > 0
    assert privacy.sample_rate == pytest.approx(1 / 23)
    assert privacy.noise_multiplier > 0.5


def test_more_noise_spends_less_epsilon(digits_root: Path) -> None:
    ex = TrainingExecutor()
    low = ex.train(_task(digits_root, dp=DPSettings(noise_multiplier=0.8))).privacy
    high = ex.train(_task(digits_root, dp=DPSettings(noise_multiplier=2.0))).privacy
    assert low is not None
    assert high is not None
    assert high.epsilon < low.epsilon


class _Scaled(torch.nn.Module):
    """An MLP behind a bare trainable scale: a layer Opacus has no per-sample sampler for."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(math.prod(spec.feature_shape)))
        self.mlp = build_model("mlp", spec, hidden=[32])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x * self.scale.view(x.shape[1:]))  # type: ignore[no-any-return]


@pytest.fixture
def scaled_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``_Scaled`` for one test (other tests list every registered model)."""
    monkeypatch.setattr(plugins, "_LOCAL", dict(plugins._LOCAL))
    register_model("test-scaled-mlp")(_Scaled)
    return "test-scaled-mlp"


def test_dp_for_a_layer_without_sampler_falls_back_to_ghost_clipping(
    digits_root: Path, scaled_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = TrainingExecutor()
    dp = DPSettings(noise_multiplier=1.0)
    scaled = ModelRef(name=scaled_model)
    booked: list[int] = []
    step = BookKeepingClipper.step

    def spy(self: BookKeepingClipper, *args: Any) -> Any:
        booked.append(1)
        return step(self, *args)

    monkeypatch.setattr(BookKeepingClipper, "step", spy)
    result = ex.train(_task(digits_root, model=scaled, dp=dp, epochs=3))
    assert booked == []  # Opacus's ghost clipping ran
    sampled = ex.train(_task(digits_root, dp=dp, epochs=3))  # the plain MLP: book-keeping
    assert booked

    assert result.privacy is not None
    assert sampled.privacy is not None
    assert result.privacy.epsilon == pytest.approx(sampled.privacy.epsilon)
    assert not torch.equal(result.weights["scale"], torch.ones_like(result.weights["scale"]))
    assert result.metrics.accuracy > 0.6  # clipped and noised, it learns (~0.8 either way)
    assert sampled.metrics.accuracy > 0.6


def test_batchnorm_is_fixed_or_refused_with_reason(digits_root: Path) -> None:
    model = ModelRef(name="cnn-batchnorm")
    refuse = _task(
        digits_root, model=model, dp=DPSettings(noise_multiplier=1.0, fix_incompatible=False)
    )
    with pytest.raises(PrivacyConfigError, match="BatchNorm"):
        TrainingExecutor().train(refuse)
    fixed = TrainingExecutor().train(
        refuse.model_copy(update={"dp": DPSettings(noise_multiplier=1.0)})
    )
    assert not any("running_mean" in k for k in fixed.weights)


def test_fedprox_pulls_towards_start_weights(digits_root: Path) -> None:
    ex = TrainingExecutor()
    free = ex.train(_task(digits_root))
    prox = ex.train(_task(digits_root, fedprox_mu=5.0))

    def norm(delta: dict[str, torch.Tensor]) -> float:
        return float(sum(float(t.pow(2).sum()) for t in delta.values()) ** 0.5)

    assert norm(prox.delta) < norm(free.delta)


def test_training_continues_from_initial_weights(digits_root: Path) -> None:
    ex = TrainingExecutor()
    first = ex.train(_task(digits_root))
    second = ex.train(_task(digits_root, initial_weights=first.weights_bytes(), seed=9))
    for name, tensor in second.delta.items():
        assert torch.allclose(first.weights[name] + tensor, second.weights[name], atol=1e-5)
