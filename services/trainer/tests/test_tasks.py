"""Mapping a round.started to the executor's task, and the numbers an update reports."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus.events import (
    LoraSpec,
    LrSchedule,
    Optimizer,
    PrivacyMode,
    PrivacySpec,
    RoundAssigned,
    Strategy,
    StrategySpec,
    TrainingConfig,
)
from fedbus_executor import DataRef, LoRASettings, PrivacyReport, TrainingMetrics, TrainingTask
from fedbus_trainer.tasks import (
    TaskConfigError,
    central_dp_norm,
    central_dp_usage,
    client_seed,
    clip_for_central_dp,
    local_dp_usage,
    training_task,
    update_metrics,
)

DATA = DataRef(path="/data/digits/clients/client-000.parquet")


Make = Callable[..., RoundAssigned]


def _task(make: Make, **overrides: object) -> TrainingTask:
    return training_task(make(**overrides), client_id="c1", data=DATA, initial_weights=b"w")


def test_training_config_maps_to_epochs_batch_and_learning_rate(round_assigned: Make) -> None:
    task = _task(
        round_assigned, training=TrainingConfig(local_epochs=3, batch_size=16, learning_rate=0.2)
    )
    assert (task.epochs, task.batch_size, task.learning_rate) == (3, 16, 0.2)
    assert task.model.name == "mlp"
    assert task.initial_weights == b"w"
    assert task.fedprox_mu is None
    assert task.dp is None


def test_defaults_train_as_before_plain_sgd_without_a_schedule(round_assigned: Make) -> None:
    task = _task(round_assigned)

    assert (task.optimizer, task.momentum, task.nesterov, task.weight_decay) == ("sgd", 0, False, 0)
    assert task.lr_schedule == "constant"
    assert task.model.kwargs == {}


def test_model_options_and_the_optimizer_reach_the_executor(round_assigned: Make) -> None:
    training = TrainingConfig(
        learning_rate=0.1,
        optimizer=Optimizer.SGD,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule=LrSchedule.STEP,
        lr_step_epochs=2,
        lr_gamma=0.5,
    )

    task = _task(round_assigned, training=training, model_options={"hidden": [32, 16]})

    assert task.model.kwargs == {"hidden": [32, 16]}
    assert (task.optimizer, task.momentum, task.nesterov, task.weight_decay) == (
        "sgd", 0.9, True, 5e-4,
    )  # fmt: skip
    assert (task.lr_schedule, task.lr_step_epochs, task.lr_gamma) == ("step", 2, 0.5)
    adamw = _task(round_assigned, training=TrainingConfig(optimizer=Optimizer.ADAMW))
    assert adamw.optimizer == "adamw"


def test_lora_reaches_the_executor(round_assigned: Make) -> None:
    lora = LoraSpec(r=4, alpha=8, dropout=0.1, target_modules=["query", "value"])

    task = _task(round_assigned, lora=lora)

    assert task.lora == LoRASettings(
        r=4, alpha=8, dropout=0.1, target_modules=("query", "value"), trainable_modules=("head",)
    )
    assert _task(round_assigned).lora is None


def test_fedprox_takes_proximal_mu_and_refuses_without_it(round_assigned: Make) -> None:
    prox = StrategySpec(name=Strategy.FEDPROX, options={"proximal_mu": 0.1})
    assert _task(round_assigned, strategy=prox).fedprox_mu == 0.1
    with pytest.raises(TaskConfigError, match="proximal_mu"):
        _task(round_assigned, strategy=StrategySpec(name=Strategy.FEDPROX))


def test_other_strategies_train_without_a_proximal_term(round_assigned: Make) -> None:
    spec = StrategySpec(name=Strategy.FEDADAM, options={"proximal_mu": 0.5})
    assert _task(round_assigned, strategy=spec).fedprox_mu is None


def test_local_dp_with_a_noise_multiplier(round_assigned: Make) -> None:
    spec = PrivacySpec(mode=PrivacyMode.LOCAL_DP, noise_multiplier=1.1, clipping_norm=0.7)
    dp = _task(round_assigned, privacy=spec).dp
    assert dp is not None
    assert (dp.noise_multiplier, dp.target_epsilon, dp.max_grad_norm) == (1.1, None, 0.7)


def test_local_dp_with_a_target_epsilon_and_delta(round_assigned: Make) -> None:
    spec = PrivacySpec(mode=PrivacyMode.LOCAL_DP, target_epsilon=4.0, delta=1e-4, clipping_norm=1.5)
    dp = _task(round_assigned, privacy=spec).dp
    assert dp is not None
    assert (dp.noise_multiplier, dp.target_epsilon, dp.delta, dp.max_grad_norm) == (
        None,
        4.0,
        1e-4,
        1.5,
    )


@pytest.mark.parametrize(
    "spec",
    [
        PrivacySpec(mode=PrivacyMode.LOCAL_DP, noise_multiplier=1.0),
        PrivacySpec(mode=PrivacyMode.LOCAL_DP, clipping_norm=1.0),
        PrivacySpec(mode=PrivacyMode.LOCAL_DP, target_epsilon=3.0, clipping_norm=1.0),
    ],
)
def test_incomplete_local_dp_is_refused(spec: PrivacySpec, round_assigned: Make) -> None:
    with pytest.raises(TaskConfigError, match="local_dp"):
        _task(round_assigned, privacy=spec)


def test_central_dp_clips_on_the_trainer_and_adds_no_local_noise(round_assigned: Make) -> None:
    event = round_assigned(privacy=PrivacySpec(mode=PrivacyMode.CENTRAL_DP, clipping_norm=0.5))
    assert central_dp_norm(event) == 0.5
    assert _task(round_assigned, privacy=event.privacy).dp is None
    usage = central_dp_usage(0.5)
    assert (usage.noise_multiplier, usage.clipping_norm, usage.steps) == (0.0, 0.5, 1)
    assert central_dp_norm(round_assigned()) is None
    with pytest.raises(TaskConfigError, match="central_dp"):
        central_dp_norm(round_assigned(privacy=PrivacySpec(mode=PrivacyMode.CENTRAL_DP)))


@settings(max_examples=50, deadline=None)
@given(
    scale=st.floats(min_value=1e-3, max_value=1e3),
    norm=st.floats(min_value=1e-2, max_value=10.0),
)
def test_a_clipped_update_has_norm_at_most_c(scale: float, norm: float) -> None:
    rng = np.random.default_rng(0)
    delta = {"w": (rng.normal(size=(4, 3)) * scale).astype(np.float32), "b": np.ones(3, np.float32)}
    clipped, before = clip_for_central_dp(delta, clipping_norm=norm)
    after = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in clipped.values()))
    assert after <= norm * (1 + 1e-5)
    assert all(v.dtype == np.float32 for v in clipped.values())
    if before <= norm:
        assert all(np.array_equal(clipped[k], delta[k]) for k in delta)


def test_local_dp_usage_reports_what_dp_sgd_used() -> None:
    report = PrivacyReport(
        noise_multiplier=1.2, sample_rate=0.09, steps=11, epsilon=3.0, delta=1e-5, max_grad_norm=0.8
    )
    usage = local_dp_usage(report)
    assert (usage.noise_multiplier, usage.sample_rate, usage.steps, usage.clipping_norm) == (
        1.2,
        0.09,
        11,
        0.8,
    )


def test_client_seed_is_stable_and_differs_per_client_round_and_seed(round_assigned: Make) -> None:
    base = {"round_seed": 42, "round_number": 1, "client_id": "a"}
    seed = client_seed(**base)  # type: ignore[arg-type]
    assert seed == client_seed(**base)  # type: ignore[arg-type]
    assert 0 <= seed < 2**63
    for change in ({"client_id": "b"}, {"round_number": 2}, {"round_seed": 43}):
        assert client_seed(**{**base, **change}) != seed  # type: ignore[arg-type]
    assert _task(round_assigned).seed == client_seed(**{**base, "client_id": "c1"})  # type: ignore[arg-type]


def test_a_job_submitted_again_with_its_seed_trains_each_client_the_same_way(
    round_assigned: Make,
) -> None:
    # A rerun is a new job (new id) with the same spec: same data order, same model bytes.
    assert _task(round_assigned, job_id="job-2").seed == _task(round_assigned).seed
    assert _task(round_assigned, seed=43).seed != _task(round_assigned).seed


def test_non_finite_metrics_are_left_out() -> None:
    metrics = TrainingMetrics(
        loss=float("nan"), accuracy=0.5, duration_s=1.5, device="cpu", epochs=1, steps=2
    )
    assert update_metrics(metrics) == {"accuracy": 0.5, "duration_s": 1.5}
