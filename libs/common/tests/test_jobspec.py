"""One validator for a job spec: what the gateway answers 422 with, and orchestration rejects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedbus.events import (
    JobSpec,
    LoraSpec,
    PrivacySpec,
    Record,
    Strategy,
    StrategySpec,
    TrainingConfig,
)
from fedbus.jobspec import (
    CENTRAL_DP_OPTIONS,
    FIELD_BOUNDS,
    MAX_NAME_LENGTH,
    MAX_PROBLEMS,
    STRATEGY_OPTIONS,
    check_spec,
    option_value,
    spec_json_schema,
    spec_problems,
)

ROOT = Path(__file__).resolve().parents[3]


def spec(**fields: Any) -> dict[str, Any]:
    return {"mode": "federated", "model": "cnn", "dataset": "mnist", "rounds": 3, **fields}


def found(raw: object) -> list[tuple[str, str]]:
    return [(p.code.value, p.field) for p in check_spec(raw)]


def test_a_sane_spec_has_no_problems() -> None:
    assert check_spec(spec()) == []


@pytest.mark.parametrize(
    ("raw", "field", "suggestion"),
    [
        (spec(round=5), "spec.round", "'rounds'"),
        (spec(training={"epochs": 2}), "spec.training.epochs", "'local_epochs'"),
        (spec(privacy={"mode": "local_dp", "epsilon": 3.0}), "spec.privacy.epsilon",
         "'target_epsilon'"),
        (spec(strategy={"name": "fedavg", "option": {}}), "spec.strategy.option", "'options'"),
        (spec(strategy={"name": "fedprox", "options": {"proximal_m": 0.1}}),
         "spec.strategy.options.proximal_m", "'proximal_mu'"),
    ],
)  # fmt: skip
def test_an_unknown_field_is_refused_with_the_close_name(
    raw: dict[str, Any], field: str, suggestion: str
) -> None:
    problems = [p for p in check_spec(raw) if p.code == "unknown_field"]

    assert [p.field for p in problems] == [field]
    assert f"did you mean {suggestion}?" in problems[0].message


def test_an_unknown_field_without_a_close_name_lists_the_known_ones() -> None:
    [problem] = check_spec(spec(training={"zzz": 1}))

    assert problem.field == "spec.training.zzz"
    assert "local_epochs" in problem.message
    assert "batch_size" in problem.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rounds": True}, "spec.rounds"),
        ({"rounds": "3"}, "spec.rounds"),
        ({"rounds": 3.0}, "spec.rounds"),
        ({"seed": False}, "spec.seed"),
        ({"client_fraction": "0.5", "clients_per_round": None}, "spec.client_fraction"),
        ({"training": {"learning_rate": True}}, "spec.training.learning_rate"),
        ({"strategy": {"name": "trimmed_mean", "options": {"trim_ratio": "0.1"}}},
         "spec.strategy.options.trim_ratio"),
        ({"privacy": []}, "spec.privacy"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_json_type_is_not_coerced(fields: dict[str, Any], field: str) -> None:
    assert found(spec(**fields)) == [("invalid_type", field)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"rounds": 2**31}, "spec.rounds"), ({"seed": 2**63}, "spec.seed"),
     ({"min_clients": -(2**31) - 1}, "spec.min_clients")],
)  # fmt: skip
def test_integers_are_range_checked_as_their_avro_type(fields: dict[str, Any], field: str) -> None:
    assert found(spec(**fields)) == [("invalid_value", field)]


def test_the_largest_avro_long_is_a_valid_seed() -> None:
    assert check_spec(spec(seed=2**63 - 1)) == []


def test_a_missing_required_field_is_named() -> None:
    assert found({"mode": "federated", "model": "cnn"}) == [
        ("missing_field", "spec.dataset"),
        ("missing_field", "spec.rounds"),
    ]


@pytest.mark.parametrize("raw", [None, [], "spec", 3])
def test_a_spec_that_is_not_an_object_is_an_invalid_type(raw: object) -> None:
    assert found(raw) == [("invalid_type", "spec")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rounds": 0}, "spec.rounds"),
        ({"privacy": {"mode": "local_dp", "target_epsilon": 3.0, "delta": 1.5,
                      "clipping_norm": 1.0}}, "spec.privacy.delta"),
        ({"privacy": {"mode": "central_dp", "target_epsilon": -1.0, "delta": 1e-5,
                      "clipping_norm": 1.0}}, "spec.privacy.target_epsilon"),
        ({"training": {"learning_rate": float("nan")}}, "spec.training.learning_rate"),
        ({"model": "m" * (MAX_NAME_LENGTH + 1)}, "spec.model"),
        ({"dataset": "d" * 10_000_000}, "spec.dataset"),
    ],
)  # fmt: skip
def test_semantic_errors_are_invalid_values(fields: dict[str, Any], field: str) -> None:
    assert found(spec(**fields)) == [("invalid_value", field)]


def test_fedprox_without_proximal_mu_is_refused() -> None:
    [problem] = check_spec(spec(strategy={"name": "fedprox"}))

    assert (problem.code, problem.field) == ("missing_field", "spec.strategy.options.proximal_mu")
    assert "fedprox needs option proximal_mu" in problem.message


def test_trimmed_mean_with_an_option_it_does_not_have_is_refused() -> None:
    [problem] = check_spec(spec(strategy={"name": "trimmed_mean", "options": {"beta": 0.9}}))

    assert (problem.code, problem.field) == ("unknown_field", "spec.strategy.options.beta")
    assert "trim_ratio" in problem.message


def test_dp_parameters_without_dp_are_refused_as_having_no_effect() -> None:
    [problem] = check_spec(spec(privacy={"mode": "none", "target_epsilon": -1}))

    assert (problem.code, problem.field) == ("invalid_value", "spec.privacy.target_epsilon")
    assert "no effect without DP" in problem.message


@pytest.mark.parametrize(
    ("strategy", "options", "field"),
    [
        ("fedprox", {"proximal_mu": 0.0}, "proximal_mu"),
        ("trimmed_mean", {"trim_ratio": 0.5}, "trim_ratio"),
        ("trimmed_mean", {"trim_fraction": -0.1}, "trim_fraction"),
        ("trimmed_mean", {"trim_ratio": 0.1, "trim_fraction": 0.1}, "trim_fraction"),
        ("krum", {"num_byzantine": 1.5}, "num_byzantine"),
        ("krum", {"num_byzantine": -1}, "num_byzantine"),
        ("multi_krum", {"num_selected": 0}, "num_selected"),
        ("fedavgm", {"server_momentum": 1.0}, "server_momentum"),
        ("fedadam", {"eta": 0.0}, "eta"),
        ("fedyogi", {"beta_2": 1.0}, "beta_2"),
        ("fedadagrad", {"tau": 0}, "tau"),
        ("fedadam", {"eta": 0.1, "server_learning_rate": 0.1}, "eta"),
        ("fedavg", {"adaptive_clipping": 1}, "adaptive_clipping"),
    ],
)
def test_strategy_options_out_of_range_are_refused(
    strategy: str, options: dict[str, float], field: str
) -> None:
    raw = spec(strategy={"name": strategy, "options": options})

    assert found(raw) == [("invalid_value", f"spec.strategy.options.{field}")]


def test_central_dp_takes_the_adaptive_clipping_options_with_any_strategy() -> None:
    privacy = {"mode": "central_dp", "target_epsilon": 3.0, "delta": 1e-5, "clipping_norm": 1.0}
    options = {"adaptive_clipping": 1, "target_unclipped_quantile": 0.5, "clip_learning_rate": 0.2,
               "clipped_count_stddev": 2.0, "trim_ratio": 0.2}  # fmt: skip

    raw = spec(privacy=privacy, strategy={"name": "trimmed_mean", "options": options})

    assert check_spec(raw) == []
    assert found(
        {**raw, "strategy": {"name": "trimmed_mean", "options": {"adaptive_clip": 1}}}
    ) == [("unknown_field", "spec.strategy.options.adaptive_clip")]


def test_a_clipped_count_stddev_that_leaves_no_noise_for_the_updates_is_refused() -> None:
    privacy = {"mode": "central_dp", "target_epsilon": 3.0, "delta": 1e-5, "clipping_norm": 1.0,
               "noise_multiplier": 1.0}  # fmt: skip
    options = {"adaptive_clipping": 1, "clipped_count_stddev": 0.5}

    raw = spec(privacy=privacy, strategy={"name": "fedavg", "options": options})

    assert found(raw) == [("invalid_value", "spec.strategy.options.clipped_count_stddev")]


def test_local_dp_needs_its_parameters() -> None:
    assert found(spec(privacy={"mode": "local_dp"})) == [
        ("missing_privacy_parameter", "spec.privacy.clipping_norm"),
        ("missing_privacy_parameter", "spec.privacy.target_epsilon"),
    ]


def test_every_problem_of_one_spec_is_listed() -> None:
    raw = spec(round=5, rounds=True, seed=False, training={"epochs": 2, "batch_size": "32"})

    assert found(raw) == [
        ("unknown_field", "spec.round"),
        ("unknown_field", "spec.training.epochs"),
        ("invalid_type", "spec.rounds"),
        ("invalid_type", "spec.training.batch_size"),
        ("invalid_type", "spec.seed"),
    ]


def test_every_semantic_problem_of_one_spec_is_listed_with_the_unknown_fields() -> None:
    privacy = {"mode": "local_dp", "target_epsilon": -1.0, "delta": 1.5, "clipping_norm": 1.0}

    raw = spec(rounds=0, privacy=privacy, strategy={"name": "fedprox"}, roundz=1)

    assert found(raw) == [
        ("unknown_field", "spec.roundz"),
        ("invalid_value", "spec.rounds"),
        ("invalid_value", "spec.privacy.target_epsilon"),
        ("invalid_value", "spec.privacy.delta"),
        ("missing_field", "spec.strategy.options.proximal_mu"),
    ]


def test_a_flood_of_unknown_fields_gives_a_bounded_answer_with_short_names() -> None:
    raw = spec(**{f"{'x' * 10_000}{i}": i for i in range(1_000)})

    problems = check_spec(raw)

    assert len(problems) == MAX_PROBLEMS
    assert max(len(p.field) + len(p.message) for p in problems) < 400


def test_a_huge_option_map_is_one_problem() -> None:
    options = {f"o{i}": 1.0 for i in range(10_000)}

    assert found(spec(strategy={"name": "fedavg", "options": options})) == [
        ("invalid_value", "spec.strategy.options")
    ]


def test_spec_problems_checks_a_decoded_spec_without_the_shape_pass() -> None:
    typed = JobSpec.model_validate(spec(strategy={"name": "fedprox"}))

    assert [(p.code.value, p.field) for p in spec_problems(typed)] == [
        ("missing_field", "spec.strategy.options.proximal_mu")
    ]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_default_is_a_value_its_option_accepts(strategy: Strategy) -> None:
    for option in (*STRATEGY_OPTIONS[strategy], *CENTRAL_DP_OPTIONS):
        assert option.default is None or option.accepts(option.default), option.name


def test_option_value_reads_an_alias_and_falls_back_to_the_default() -> None:
    fedadam = StrategySpec(name=Strategy.FEDADAM, options={"eta": 0.5})

    assert option_value(fedadam, "server_learning_rate") == 0.5
    assert option_value(fedadam, "beta_1") == 0.9
    assert option_value(StrategySpec(name=Strategy.MULTI_KRUM), "num_selected") is None
    with pytest.raises(KeyError):
        option_value(fedadam, "trim_ratio")


def example_specs() -> Iterator[tuple[str, object]]:
    for path in sorted((ROOT / "schemas" / "examples").glob("job.*.json")):
        event = json.loads(path.read_text())
        if "spec" in event:
            yield path.name, event["spec"]
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "mode" in raw:  # the others are executor configs, not job specs
            raw.pop("idempotency_key", None)
            yield path.name, raw
    for path in sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]):
        for i, block in enumerate(re.findall(r"```json\n(.*?)```", path.read_text(), re.S)):
            yield from ((f"{path.name}#{i}", s) for s in _specs_in(json.loads(block)))


def _specs_in(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        if isinstance(value.get("spec"), dict) and "mode" in value["spec"]:
            yield value["spec"]
        for inner in value.values():
            yield from _specs_in(inner)


EXAMPLES = list(example_specs())


def test_the_examples_include_yaml_json_and_docs() -> None:
    names = [name for name, _ in EXAMPLES]
    assert any(n.endswith(".yaml") for n in names)
    assert any(n.endswith(".json") for n in names)
    assert any(".md#" in n for n in names)


@pytest.mark.parametrize(("name", "raw"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_every_example_spec_is_valid(name: str, raw: object) -> None:
    assert check_spec(raw) == []


def test_the_docs_table_names_every_option_of_every_strategy() -> None:
    text = (ROOT / "docs" / "jobspec.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", text, re.M))

    for strategy, options in STRATEGY_OPTIONS.items():
        named = set(re.findall(r"`(\w+)`", rows[strategy.value]))
        assert {o.name for o in options} <= named, strategy
    assert all(f"`{o.name}`" in text for o in CENTRAL_DP_OPTIONS)


def test_the_json_schema_is_self_contained_and_closes_every_record() -> None:
    schema = spec_json_schema()
    text = json.dumps(schema)

    assert "$ref" not in text
    assert "$defs" not in text
    for record in (schema, *(schema["properties"][n] for n in ("training", "strategy", "privacy"))):
        assert record["additionalProperties"] is False
        assert set(record["properties"]) == set(_model_of(record).model_fields)
    assert schema["required"] == ["mode", "model", "dataset", "rounds"]


def _model_of(record: dict[str, Any]) -> type[Record]:
    titles: dict[str, type[Record]] = {
        m.__name__: m for m in (TrainingConfig, StrategySpec, PrivacySpec)
    }
    return titles.get(record.get("title", ""), JobSpec)


DP_SPEC = spec(
    clients_per_round=2, client_fraction=0.5,
    privacy={"mode": "local_dp", "target_epsilon": 3.0, "delta": 1e-5, "noise_multiplier": 1.0,
             "clipping_norm": 1.0},
)  # fmt: skip


def _with(raw: dict[str, Any], path: tuple[str, ...], value: float) -> dict[str, Any]:
    if len(path) == 1:
        return {**raw, path[0]: value}
    return {**raw, path[0]: _with(raw.get(path[0], {}), path[1:], value)}


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for name in path:
        schema = schema["properties"][name]
    return next((s for s in schema.get("anyOf", []) if s["type"] != "null"), schema)


@pytest.mark.parametrize("path", list(FIELD_BOUNDS), ids=".".join)
def test_each_bounded_field_is_refused_past_its_bounds_and_the_schema_says_so(
    path: tuple[str, ...],
) -> None:
    bound = FIELD_BOUNDS[path]
    assert bound.low is not None
    outside = [bound.low if bound.low_open else bound.low - 1]
    if bound.high is not None:
        outside.append(bound.high if bound.high_open else bound.high + 0.5)
    field = ".".join(("spec", *path))
    documented = _schema_at(spec_json_schema(), path)

    assert check_spec(DP_SPEC) == []
    for value in outside:
        assert ("invalid_value", field) in found(_with(DP_SPEC, path, value)), value
    assert {"minimum", "exclusiveMinimum"} & documented.keys()


def test_an_unknown_name_with_an_unpaired_surrogate_is_shown_escaped() -> None:
    problems = check_spec(spec(**{"\ud800x": 1}))

    unknown = [p for p in problems if p.code == "unknown_field"]
    assert [p.field for p in unknown] == ["spec.\\ud800x"]
    for problem in problems:  # the answer can be sent as UTF-8
        (problem.field + problem.message).encode("utf-8")


def test_a_lora_spec_takes_defaults_but_its_targets() -> None:
    lora = {"target_modules": ["query", "value"]}

    assert check_spec(spec(lora=lora)) == []
    assert JobSpec.model_validate(spec(lora=lora)).lora == LoraSpec(
        r=8, alpha=16, dropout=0.0, target_modules=["query", "value"], trainable_modules=["head"]
    )


@pytest.mark.parametrize(
    ("lora", "field", "message"),
    [
        ({"target_modules": []}, "spec.lora.target_modules", "name at least one module"),
        ({"target_modules": ["q"], "r": 0}, "spec.lora.r", "r must be in [1, 256], got 0"),
        ({"target_modules": ["q"], "dropout": 1.0}, "spec.lora.dropout", "in [0, 1), got 1"),
        ({"target_modules": ["q"], "rank": 4}, "spec.lora.rank", "unknown field 'rank'"),
        ({"target_modules": [""]}, "spec.lora.target_modules", "a module name has 1 to"),
    ],
)
def test_lora_problems_name_their_field(lora: dict[str, Any], field: str, message: str) -> None:
    [problem] = check_spec(spec(lora=lora))

    assert problem.field == field
    assert message in problem.message
