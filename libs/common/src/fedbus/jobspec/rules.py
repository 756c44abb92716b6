"""The semantic rules of a job spec, over a typed ``JobSpec``: ranges, DP parameters, options.

Orchestration runs :func:`spec_problems` on every ``job.requested`` it decodes; the gateway
runs it (through :func:`fedbus.jobspec.check_spec`) before it stores or publishes anything.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedbus.events.jobs import JobSpec
from fedbus.events.records import JobMode, LrSchedule, Optimizer, PrivacyMode, StrategySpec
from fedbus.jobspec.bounds import AT_LEAST_1, POSITIVE, Interval
from fedbus.jobspec.options import CENTRAL_DP_OPTIONS, STRATEGY_OPTIONS, StrategyOption
from fedbus.jobspec.problems import ProblemCode, SpecProblem, did_you_mean, shown

__all__ = [
    "FIELD_BOUNDS",
    "LORA_BOUNDS",
    "MAX_LORA_MODULES",
    "MAX_NAME_LENGTH",
    "MAX_OPTIONS",
    "MAX_OPTION_ITEMS",
    "spec_problems",
]

MAX_NAME_LENGTH = 200
"""Longest ``model`` and ``dataset`` name: far below what fits in one event on the bus."""
MAX_OPTIONS = 32
"""Most entries in ``strategy.options`` (a strategy reads at most nine, with central DP) and
in ``model_options``."""
MAX_OPTION_ITEMS = 64
"""Longest list in ``model_options``."""

FIELD_BOUNDS: Mapping[tuple[str, ...], Interval] = {
    ("rounds",): AT_LEAST_1,
    ("clients_per_round",): AT_LEAST_1,
    ("client_fraction",): Interval(0, 1, low_open=True),
    ("min_clients",): AT_LEAST_1,
    ("round_deadline_seconds",): POSITIVE,
    ("training", "local_epochs"): AT_LEAST_1,
    ("training", "batch_size"): AT_LEAST_1,
    ("training", "learning_rate"): POSITIVE,
    ("training", "momentum"): Interval(0, 1, high_open=True),
    ("training", "weight_decay"): Interval(low=0),
    ("training", "lr_step_epochs"): AT_LEAST_1,
    ("training", "lr_gamma"): Interval(0, 1, low_open=True),
    ("training", "lr_min"): Interval(low=0),
    ("privacy", "target_epsilon"): POSITIVE,
    ("privacy", "delta"): Interval(0, 1, low_open=True, high_open=True),
    ("privacy", "noise_multiplier"): POSITIVE,
    ("privacy", "clipping_norm"): POSITIVE,
}
"""The values each numeric field allows, when it is set (paths below the spec). The DP
parameters are checked only in a DP mode: with mode ``none`` they are refused outright."""

LORA_BOUNDS: Mapping[str, Interval] = {
    "r": Interval(1, 256),
    "alpha": Interval(1, 4096),
    "dropout": Interval(0, 1, high_open=True),
}
"""The values each number of ``spec.lora`` allows."""
MAX_LORA_MODULES = 16
"""Most names in ``lora.target_modules`` and in ``lora.trainable_modules``."""

_INVALID = ProblemCode.INVALID_VALUE
_OPTIONS = ("spec", "strategy", "options")
_DP_PARAMETERS = ("target_epsilon", "delta", "noise_multiplier", "clipping_norm")


def _problem(code: ProblemCode, field: str, message: str) -> SpecProblem:
    return SpecProblem(code=code, loc=tuple(field.split(".")), message=message)


def spec_problems(spec: JobSpec) -> list[SpecProblem]:
    """Every semantic problem of a well-typed spec; an empty list means it may run.

    What the trainers can build, and which datasets are live, is orchestration's to check:
    these rules need nothing but the spec.

    Parameters
    ----------
    spec
        A job spec (already of the right shape and types).

    Returns
    -------
    list[SpecProblem]
        One problem per broken rule, in the order: names, numbers, privacy, strategy options.
    """
    return (
        _names(spec) + _model_options(spec) + _numbers(spec) + _training(spec)
        + _privacy(spec) + _strategy(spec) + _lora(spec)
    )  # fmt: skip


def _model_options(spec: JobSpec) -> list[SpecProblem]:
    """Sizes only: what each option means is the model plugin's schema to check."""
    options = spec.model_options
    if len(options) > MAX_OPTIONS:
        message = f"at most {MAX_OPTIONS} options (got {len(options):,})"
        return [_problem(_INVALID, "spec.model_options", message)]
    out = []
    for key, value in options.items():
        loc = ("spec", "model_options", shown(key))
        if not key or len(key) > MAX_NAME_LENGTH:
            message = f"an option name has 1 to {MAX_NAME_LENGTH} characters"
            out.append(SpecProblem(_INVALID, loc, message))
        elif isinstance(value, list) and len(value) > MAX_OPTION_ITEMS:
            message = f"at most {MAX_OPTION_ITEMS} items (got {len(value):,})"
            out.append(SpecProblem(_INVALID, loc, message))
        elif isinstance(value, str) and len(value) > MAX_NAME_LENGTH:
            message = f"must be at most {MAX_NAME_LENGTH} characters (got {len(value):,})"
            out.append(SpecProblem(_INVALID, loc, message))
    return out


def _training(spec: JobSpec) -> list[SpecProblem]:
    """The optimizer's fields that only make sense together."""
    training = spec.training
    sgd = training.optimizer is Optimizer.SGD
    out = []
    if training.nesterov and not (sgd and training.momentum > 0):
        message = "nesterov needs optimizer sgd with momentum > 0"
        out.append(_problem(_INVALID, "spec.training.nesterov", message))
    if training.momentum > 0 and not sgd:
        message = f"momentum is SGD's; {training.optimizer.value} has none (use optimizer sgd)"
        out.append(_problem(_INVALID, "spec.training.momentum", message))
    if training.lr_schedule is LrSchedule.COSINE and training.lr_min > training.learning_rate:
        message = (
            f"lr_min {training.lr_min:g} must not exceed learning_rate {training.learning_rate:g}"
        )
        out.append(_problem(_INVALID, "spec.training.lr_min", message))
    return out


def _lora(spec: JobSpec) -> list[SpecProblem]:
    """Ranges and module lists; which modules the model declares is admission's to check."""
    lora = spec.lora
    if lora is None:
        return []
    out = []
    for name, bound in LORA_BOUNDS.items():
        value = getattr(lora, name)
        if not bound.accepts(value):
            message = f"{name} must be {bound.allowed}, got {value:g}"
            out.append(_problem(_INVALID, f"spec.lora.{name}", message))
    for name in ("target_modules", "trainable_modules"):
        modules: list[str] = getattr(lora, name)
        if name == "target_modules" and not modules:
            message = "name at least one module to adapt (the model's LoRA targets)"
            out.append(_problem(ProblemCode.MISSING_FIELD, f"spec.lora.{name}", message))
        elif len(modules) > MAX_LORA_MODULES:
            message = f"at most {MAX_LORA_MODULES} modules (got {len(modules):,})"
            out.append(_problem(_INVALID, f"spec.lora.{name}", message))
        elif any(not m or len(m) > MAX_NAME_LENGTH for m in modules):
            message = f"a module name has 1 to {MAX_NAME_LENGTH} characters"
            out.append(_problem(_INVALID, f"spec.lora.{name}", message))
    return out


def _names(spec: JobSpec) -> list[SpecProblem]:
    return [
        _problem(_INVALID, f"spec.{name}", f"must be at most {MAX_NAME_LENGTH} characters "
                 f"(got {len(value):,})")
        for name, value in (("model", spec.model), ("dataset", spec.dataset))
        if len(value) > MAX_NAME_LENGTH
    ]  # fmt: skip


def _value(spec: JobSpec, path: tuple[str, ...]) -> float | None:
    node: object = spec
    for name in path:
        node = getattr(node, name)
    return node if isinstance(node, int | float) else None


def _bounds(spec: JobSpec, *, privacy: bool) -> list[SpecProblem]:
    out = []
    for path, bound in FIELD_BOUNDS.items():
        value = _value(spec, path)
        if (path[0] == "privacy") == privacy and value is not None and not bound.accepts(value):
            message = f"{path[-1]} must be {bound.allowed}, got {value:g}"
            out.append(SpecProblem(_INVALID, ("spec", *path), message))
    return out


def _numbers(spec: JobSpec) -> list[SpecProblem]:
    checks: list[tuple[bool, str, str]] = []
    if spec.clients_per_round is not None:
        checks.append(
            (
                spec.min_clients <= spec.clients_per_round,
                "spec.min_clients",
                "min_clients must not exceed clients_per_round",
            )
        )
    if spec.mode is JobMode.CENTRALIZED:
        checks.append(
            (spec.min_clients == 1, "spec.min_clients", "a centralized job trains on one trainer")
        )
        checks.append(
            (
                spec.clients_per_round in (None, 1),
                "spec.clients_per_round",
                "a centralized job trains on one trainer",
            )
        )
    across = [_problem(_INVALID, field, message) for ok, field, message in checks if not ok]
    return _bounds(spec, privacy=False) + across


def _privacy(spec: JobSpec) -> list[SpecProblem]:
    privacy = spec.privacy
    if privacy.mode is PrivacyMode.NONE:
        return [
            _problem(_INVALID, f"spec.privacy.{name}",
                     f"{name} has no effect without DP (privacy.mode is none): "
                     "remove it, or ask for local_dp or central_dp")
            for name in _DP_PARAMETERS
            if getattr(privacy, name) is not None
        ]  # fmt: skip
    mode = privacy.mode.value
    missing = ProblemCode.MISSING_PRIVACY_PARAMETER
    out = []
    if privacy.clipping_norm is None:
        out.append(_problem(missing, "spec.privacy.clipping_norm", f"{mode} needs clipping_norm"))
    # The budget is what the accountant holds the job to: a noise multiplier alone is not one.
    if privacy.target_epsilon is None or privacy.delta is None:
        name = "delta" if privacy.target_epsilon is not None else "target_epsilon"
        message = f"{mode} needs target_epsilon and delta (the job's budget)"
        out.append(_problem(missing, f"spec.privacy.{name}", message))
    return out + _bounds(spec, privacy=True)


def _strategy(spec: JobSpec) -> list[SpecProblem]:
    strategy = spec.strategy
    if len(strategy.options) > MAX_OPTIONS:
        message = f"at most {MAX_OPTIONS} options (got {len(strategy.options):,})"
        return [SpecProblem(_INVALID, _OPTIONS, message)]
    central = spec.privacy.mode is PrivacyMode.CENTRAL_DP
    own = {o.name: o for o in STRATEGY_OPTIONS[strategy.name]}
    dp = {o.name: o for o in CENTRAL_DP_OPTIONS}
    out = []
    for key, value in strategy.options.items():
        option = own.get(key) or dp.get(key)
        loc = (*_OPTIONS, shown(key))
        if option is None:
            known = own.keys() | (dp.keys() if central else set())
            hint = did_you_mean(key, known, what=f"{strategy.name.value} options")
            message = f"{strategy.name.value} has no option '{shown(key)}'; {hint}"
            out.append(SpecProblem(ProblemCode.UNKNOWN_FIELD, loc, message))
        elif key not in own and not central:
            message = f"{key} has no effect without central DP (privacy.mode is not central_dp)"
            out.append(SpecProblem(_INVALID, loc, message))
        elif not option.accepts(value):
            out.append(SpecProblem(_INVALID, loc, f"{key} must be {option.allowed}, got {value:g}"))
    return out + _option_presence(strategy, own) + _count_noise(spec)


def _option_presence(strategy: StrategySpec, own: dict[str, StrategyOption]) -> list[SpecProblem]:
    name, given = strategy.name.value, strategy.options
    out = []
    for option in own.values():
        if option.required and option.name not in given:
            message = f"{name} needs option {option.name} ({option.allowed})"
            out.append(SpecProblem(ProblemCode.MISSING_FIELD, (*_OPTIONS, option.name), message))
        if option.alias_of is not None and {option.name, option.alias_of} <= given.keys():
            message = f"{option.name} is another name for {option.alias_of}: give one of them"
            out.append(SpecProblem(_INVALID, (*_OPTIONS, option.name), message))
    return out


def _count_noise(spec: JobSpec) -> list[SpecProblem]:
    # The noisy count takes its share of the noise: 2 * stddev must exceed the multiplier.
    stddev = spec.strategy.options.get("clipped_count_stddev")
    noise = spec.privacy.noise_multiplier
    if spec.privacy.mode is not PrivacyMode.CENTRAL_DP:
        return []  # refused above: the option has no effect
    if stddev is None or noise is None or noise <= 0 or stddev <= 0 or 2 * stddev > noise:
        return []
    message = (
        f"clipped_count_stddev {stddev:g} leaves no noise for the updates at noise_multiplier "
        f"{noise:g}: it must be more than {noise / 2:g}"
    )
    return [SpecProblem(_INVALID, (*_OPTIONS, "clipped_count_stddev"), message)]
