"""Spec validation: every reason a job request cannot run, as ``RejectionReason`` records.

The rules that need nothing but the spec (ranges, DP parameters, strategy options) are
:func:`fedbus.jobspec.spec_problems`, the same the gateway answers 422 with; this module
adds what only orchestration knows: what live trainers can build (their heartbeats,
:mod:`fedbus_orchestration.admission`), the aggregator's catalog, the budget's reach.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from fedbus.events import JobMode, JobSpec, PrivacyMode, RejectionReason
from fedbus.jobspec import spec_problems
from fedbus.privacy import UnreachableTargetError
from fedbus_orchestration.admission import capability_reasons, catalog_reasons
from fedbus_orchestration.lifetime import Lifetimes, round_steps
from fedbus_orchestration.noise import first_round_epsilon, round_noise_multiplier
from fedbus_orchestration.selection import TrainerInfo

__all__ = ["validate_request"]


def validate_request(
    spec: JobSpec,
    *,
    job_id: str,
    known_datasets: Collection[str],
    holders: Sequence[TrainerInfo],
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
    aggregator_models: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RejectionReason]:
    """Return one reason per problem; an empty list means the job can run.

    Parameters
    ----------
    spec
        The requested job.
    job_id
        The job id (it must not be empty: it keys every event of the job).
    known_datasets
        Datasets accepted without a live trainer (the job waits for trainers): with no live
        holder, nothing is checked against trainers' capabilities.
    holders
        Fresh trainers that hold ``spec.dataset`` now. At least ``min_clients`` of them
        (one, centralized) must announce ``spec.model``, accept ``spec.model_options`` and
        list the model as buildable for the dataset (:mod:`fedbus_orchestration.admission`).
    samples
        Records per eligible trainer (from heartbeats): an explicit noise multiplier whose
        first round alone would exceed the budget on one of them is ``budget_too_small``.
    lifetimes
        Each client's lifetime spend under the deployment's cap (None: no cap). When fewer
        than ``min_clients`` of the eligible trainers can afford every planned round, the
        job is ``lifetime_budget_exceeded``.
    aggregator_models
        What the aggregator can build (``FEDBUS_MODEL_CATALOG``, options JSON Schema per
        model; None: not configured, not checked).
    """
    reasons = _identity(spec, job_id, known_datasets, holders)
    reasons += _merge(catalog_reasons(spec, aggregator_models), reasons)
    reasons += [_reason(p.code.value, p.field, p.message) for p in spec_problems(spec)]
    if not reasons:
        reasons = _budget(spec, samples or {})
    if not reasons and lifetimes is not None:
        reasons = _lifetime(spec, samples or {}, lifetimes)
    return reasons


def _reason(code: str, field: str | None, message: str) -> RejectionReason:
    return RejectionReason(code=code, field=field, message=message)


def _merge(new: list[RejectionReason], old: list[RejectionReason]) -> list[RejectionReason]:
    """``new`` without the reasons ``old`` already gives for the same code and field."""
    seen = {(r.code, r.field) for r in old}
    return [r for r in new if (r.code, r.field) not in seen]


def _identity(
    spec: JobSpec,
    job_id: str,
    known_datasets: Collection[str],
    holders: Sequence[TrainerInfo],
) -> list[RejectionReason]:
    out = []
    if not job_id.strip():
        out.append(_reason("invalid_value", "job_id", "the job id must not be empty"))
    if not holders:
        if spec.dataset not in known_datasets:
            message = f"no live trainer holds dataset {spec.dataset!r}"
            out.append(_reason("unknown_dataset", "spec.dataset", message))
        return out
    return out + capability_reasons(spec, holders)


def _budget(spec: JobSpec, samples: Mapping[str, int]) -> list[RejectionReason]:
    privacy = spec.privacy
    first = first_round_epsilon(spec, clients=samples.keys(), samples=samples)
    if first is None or privacy.target_epsilon is None or first <= privacy.target_epsilon:
        return []
    message = (
        f"noise_multiplier {privacy.noise_multiplier:g} spends epsilon {first:.4g} in the first "
        f"round alone, more than the budget {privacy.target_epsilon:g} at delta {privacy.delta:g}"
    )
    return [_reason("budget_too_small", "spec.privacy.noise_multiplier", message)]


def _lifetime(
    spec: JobSpec, samples: Mapping[str, int], lifetimes: Lifetimes
) -> list[RejectionReason]:
    """Admission: can ``min_clients`` trainers afford all of the job's rounds within the cap?

    A client takes part in at most ``spec.rounds`` rounds; each spends what
    :func:`~fedbus_orchestration.lifetime.round_steps` says at the job's noise multiplier
    (explicit, or derived from the budget over the eligible trainers).
    """
    delta = spec.privacy.delta
    if spec.privacy.mode is PrivacyMode.NONE or delta is None or not samples:
        return []
    try:
        noise = round_noise_multiplier(spec, selected=samples.keys(), samples=samples)
    except UnreachableTargetError:
        return []  # the job's own budget is too small: the first round reports it
    if noise is None:
        return []
    reach = {
        c: lifetimes.projected(c, [round_steps(spec, c, noise, samples)] * spec.rounds, delta)
        for c in sorted(samples)
    }
    affordable = [c for c, epsilon in reach.items() if epsilon <= lifetimes.cap]
    needed = 1 if spec.mode is JobMode.CENTRALIZED else spec.min_clients
    if len(affordable) >= needed:
        return []
    short = [c for c in reach if c not in affordable]
    shown = ", ".join(f"{c} (would reach {reach[c]:.4g})" for c in short[:5])
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    message = (
        f"{spec.rounds} planned round(s) at noise multiplier {noise:.4g} would take "
        f"{len(short)} of {len(samples)} trainer(s) holding {spec.dataset!r} past their "
        f"lifetime privacy cap epsilon {lifetimes.cap:g} at delta {delta:g}: {shown}{more}; "
        f"{len(affordable)} can afford it, the job needs {needed}"
    )
    return [_reason("lifetime_budget_exceeded", "spec.privacy", message)]
