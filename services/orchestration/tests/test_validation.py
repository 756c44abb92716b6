"""Spec validation: one machine-readable reason per problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fedbus.events import (
    JobMode,
    JobRequested,
    JobSpec,
    PrivacyMode,
    PrivacySpec,
    Strategy,
    StrategySpec,
    TrainingConfig,
    decode,
)
from fedbus.events.schemas import schema_dir
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.validation import validate_request

MODELS = {"cnn", "mlp"}


def problems(spec: JobSpec, *, live: int = 5, datasets: set[str] | None = None,
             job_id: str = "job-1") -> list[tuple[str, str | None]]:  # fmt: skip
    reasons = validate_request(
        spec, job_id=job_id, known_models=MODELS, known_datasets=datasets or set(),
        live_holders=live,
    )  # fmt: skip
    return [(r.code, r.field) for r in reasons]


def test_a_sane_spec_has_no_problems(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec()) == []


def test_unknown_model_and_dataset_are_both_reported(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec(model="resnet-9000"), live=0) == [
        ("unknown_model", "spec.model"),
        ("unknown_dataset", "spec.dataset"),
    ]


def test_a_configured_dataset_needs_no_live_trainer(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec(dataset="census"), live=0, datasets={"census"}) == []


def test_fewer_live_trainers_than_min_clients_is_rejected(
    make_spec: Callable[..., JobSpec],
) -> None:
    assert problems(make_spec(min_clients=3, clients_per_round=3), live=2) == [
        ("too_few_clients", "spec.min_clients")
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rounds": 0}, "spec.rounds"),
        ({"min_clients": 0}, "spec.min_clients"),
        ({"min_clients": 3, "clients_per_round": 2}, "spec.min_clients"),
        ({"clients_per_round": 0, "min_clients": 0}, "spec.clients_per_round"),
        ({"clients_per_round": None, "client_fraction": 1.5}, "spec.client_fraction"),
        ({"clients_per_round": None, "client_fraction": 0.0}, "spec.client_fraction"),
        ({"round_deadline_seconds": 0}, "spec.round_deadline_seconds"),
        ({"training": TrainingConfig(learning_rate=0)}, "spec.training.learning_rate"),
        ({"training": TrainingConfig(batch_size=0)}, "spec.training.batch_size"),
        ({"mode": JobMode.CENTRALIZED, "clients_per_round": 1, "min_clients": 2},
         "spec.min_clients"),
    ],
)  # fmt: skip
def test_insane_numbers_are_invalid_values(
    make_spec: Callable[..., JobSpec], overrides: dict[str, Any], field: str
) -> None:
    assert ("invalid_value", field) in problems(make_spec(**overrides))


def test_an_empty_job_id_is_invalid(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec(), job_id=" ") == [("invalid_value", "job_id")]


@pytest.mark.parametrize(
    ("privacy", "expected"),
    [
        # docs/privacy.md: a noise multiplier alone is no budget; target and delta are needed.
        (PrivacySpec(mode=PrivacyMode.LOCAL_DP, noise_multiplier=1.0),
         [("missing_privacy_parameter", "spec.privacy.clipping_norm"),
          ("missing_privacy_parameter", "spec.privacy.target_epsilon")]),
        (PrivacySpec(mode=PrivacyMode.CENTRAL_DP, clipping_norm=1.0),
         [("missing_privacy_parameter", "spec.privacy.target_epsilon")]),
        (PrivacySpec(mode=PrivacyMode.LOCAL_DP, clipping_norm=1.0, target_epsilon=8.0),
         [("missing_privacy_parameter", "spec.privacy.delta")]),
        (PrivacySpec(mode=PrivacyMode.LOCAL_DP, clipping_norm=1.0, target_epsilon=8, delta=2.0),
         [("invalid_value", "spec.privacy.delta")]),
        (PrivacySpec(mode=PrivacyMode.LOCAL_DP, clipping_norm=1.0, target_epsilon=8, delta=1e-5),
         []),
        (PrivacySpec(mode=PrivacyMode.CENTRAL_DP, clipping_norm=0.5, noise_multiplier=1.1),
         [("missing_privacy_parameter", "spec.privacy.target_epsilon")]),
        (PrivacySpec(mode=PrivacyMode.CENTRAL_DP, clipping_norm=0.5, noise_multiplier=1.1,
                     target_epsilon=8.0, delta=1e-5), []),
        (PrivacySpec(mode=PrivacyMode.NONE, clipping_norm=-1),
         [("invalid_value", "spec.privacy.clipping_norm")]),
    ],
)  # fmt: skip
def test_privacy_parameters(
    make_spec: Callable[..., JobSpec], privacy: PrivacySpec, expected: list[tuple[str, str]]
) -> None:
    assert problems(make_spec(privacy=privacy)) == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"strategy": StrategySpec(name=Strategy.FEDPROX)},
         ("missing_field", "spec.strategy.options.proximal_mu")),
        ({"strategy": StrategySpec(name=Strategy.TRIMMED_MEAN, options={"beta": 0.9})},
         ("unknown_field", "spec.strategy.options.beta")),
        ({"privacy": PrivacySpec(mode=PrivacyMode.NONE, target_epsilon=-1)},
         ("invalid_value", "spec.privacy.target_epsilon")),
    ],
)  # fmt: skip
def test_strategy_options_and_dp_parameters_without_dp_are_checked(
    make_spec: Callable[..., JobSpec], overrides: dict[str, Any], expected: tuple[str, str]
) -> None:
    # Three specs that were once accepted and ran (or failed later, on the trainers).
    assert problems(make_spec(**overrides)) == [expected]


def test_known_models_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBUS_KNOWN_MODELS", "cnn, mlp")
    monkeypatch.setenv("FEDBUS_KNOWN_DATASETS", "census")

    settings = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.known_models == ["cnn", "mlp"]
    assert settings.known_datasets == ["census"]
    assert settings.consumer_group == "orchestration"


def test_the_documented_job_request_is_valid_with_the_default_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # docs/events.md shows this body as the job an outside system publishes.
    monkeypatch.delenv("FEDBUS_KNOWN_MODELS", raising=False)
    example = (schema_dir() / "examples" / "job.requested.json").read_bytes()
    request = decode(example)
    assert isinstance(request, JobRequested)
    settings = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]

    reasons = validate_request(
        request.spec, job_id=request.job_id, known_models=settings.known_models,
        known_datasets=(), live_holders=request.spec.clients_per_round or 1,
    )  # fmt: skip

    assert reasons == []
