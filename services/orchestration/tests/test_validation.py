"""Spec validation: one machine-readable reason per problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
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
from fedbus_orchestration.deps import deps_from
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.validation import validate_request

from .fakes import FakeJobStore, holder


def holders(count: int, dataset: str = "digits") -> list[TrainerInfo]:
    """``count`` live trainers holding ``dataset`` that can build cnn and mlp for it."""
    return [holder(f"t{i}", dataset) for i in range(count)]


def problems(spec: JobSpec, *, live: int = 5, datasets: set[str] | None = None,
             job_id: str = "job-1") -> list[tuple[str, str | None]]:  # fmt: skip
    reasons = validate_request(
        spec, job_id=job_id, known_datasets=datasets or set(),
        holders=holders(live, spec.dataset),
    )  # fmt: skip
    return [(r.code, r.field) for r in reasons]


def test_a_sane_spec_has_no_problems(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec()) == []


def test_a_model_no_live_trainer_announces_is_unknown(make_spec: Callable[..., JobSpec]) -> None:
    assert problems(make_spec(model="resnet-9000")) == [("unknown_model", "spec.model")]
    assert problems(make_spec(model="resnet-9000"), live=0) == [("unknown_dataset", "spec.dataset")]


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


def test_known_datasets_come_from_the_environment_and_models_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEDBUS_KNOWN_DATASETS", "census")

    settings = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.known_datasets == ["census"]
    assert not hasattr(settings, "known_models")  # a model is known when a trainer announces it
    assert settings.consumer_group == "orchestration"


def test_the_documented_job_request_is_valid_on_trainers_with_the_built_in_models() -> None:
    # docs/events.md shows this body as the job an outside system publishes.
    example = (schema_dir() / "examples" / "job.requested.json").read_bytes()
    request = decode(example)
    assert isinstance(request, JobRequested)
    spec = request.spec
    # The built-in model's real options schema (fedbus models available --json).
    cnn = {"additionalProperties": False, "type": "object", "properties": {
        "channels": {"type": "integer", "minimum": 8, "multipleOf": 8},
        "hidden": {"type": "integer"}, "dropout": {"type": "number"}}}  # fmt: skip
    live = [holder(f"t{i}", spec.dataset, models={spec.model: cnn})
            for i in range(max(spec.min_clients, spec.clients_per_round or 1))]  # fmt: skip

    reasons = validate_request(
        spec, job_id=request.job_id, known_datasets=(), holders=live,
    )  # fmt: skip

    assert reasons == []


# ``fedbus models available --json`` for the example package's tabular-mlp (no torch here).
TABULAR: dict[str, Any] = {
    "name": "tabular-mlp",
    "options_schema": {
        "additionalProperties": False,
        "properties": {
            "hidden": {"default": [64, 32], "items": {"type": "integer"}, "maxItems": 8,
                       "minItems": 1, "type": "array"},
            "dropout": {"default": 0.0, "exclusiveMaximum": 1.0, "minimum": 0.0,
                        "type": "number"},
        },
        "type": "object",
    },
}  # fmt: skip


def test_model_options_are_checked_against_the_aggregators_catalog_at_their_name(
    make_spec: Callable[..., JobSpec],
) -> None:
    schemas = {"tabular-mlp": TABULAR["options_schema"]}
    live = [holder(f"t{i}", models={"tabular-mlp": TABULAR["options_schema"], "cnn": {}})
            for i in range(3)]  # fmt: skip

    def check(
        options: dict[str, Any], model: str = "tabular-mlp"
    ) -> list[tuple[str, str | None, str]]:
        spec = make_spec(model=model, model_options=options)
        reasons = validate_request(
            spec, job_id="job-1", known_datasets=(), holders=live, aggregator_models=schemas,
        )  # fmt: skip
        return [(r.code, r.field, r.message) for r in reasons]

    assert check({"hidden": [16], "dropout": 0.5}) == []
    [(code, field, message)] = check({"hiden": [16]})
    assert (code, field) == ("invalid_model_option", "spec.model_options.hiden")
    assert "did you mean 'hidden'" in message
    [(code, field, message)] = check({"dropout": 1.5})
    assert (code, field) == ("invalid_model_option", "spec.model_options.dropout")
    assert "option dropout of model 'tabular-mlp': must be < 1, got 1.5" in message
    [(code, field, message)] = check({"hidden": [16, 2.5]})
    assert "item 1 must be an integer, got the number 2.5" in message
    # The trainers build cnn, the aggregator's catalog lacks it: rejected at admission.
    [(code, field, message)] = check({}, model="cnn")
    assert (code, field) == ("unknown_model", "spec.model")
    assert (
        message
        == "the aggregator cannot build model 'cnn' (FEDBUS_MODEL_CATALOG lists tabular-mlp)"
    )


def test_the_model_catalog_is_what_the_aggregator_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [TABULAR], "errors": []}))
    monkeypatch.setenv("FEDBUS_MODEL_CATALOG", str(catalog))
    settings = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]

    deps = deps_from(settings, FakeJobStore())

    assert deps.aggregator_models == {"tabular-mlp": TABULAR["options_schema"]}
    monkeypatch.setenv("FEDBUS_MODEL_CATALOG", json.dumps([TABULAR]))  # inline, a ConfigMap's
    inline = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]
    assert deps_from(inline, FakeJobStore()).aggregator_models == deps.aggregator_models
    monkeypatch.delenv("FEDBUS_MODEL_CATALOG")
    unset = OrchestrationSettings(_env_file=None)  # type: ignore[call-arg]
    assert deps_from(unset, FakeJobStore()).aggregator_models is None
    catalog.write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(ValueError, match="needs a name and an options_schema"):
        deps_from(settings, FakeJobStore())
