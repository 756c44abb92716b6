"""A data owner's site policy: which rounds this trainer accepts, decided purely.

The policy is the site's, not the job's: the largest epsilon it lets a job spend on its data,
the models it lets run, and how many rounds it trains a day. :func:`decide` takes what a round
asks for (:class:`RoundAsk`, built from the round's fields), what this site already spent on
the job and when it trained its recent rounds, and returns the rules the round breaks. No I/O:
the file is read by :func:`load_policy`, the history is kept by
:class:`~fedbus_trainer.site_log.SiteLog`.

"The epsilon a job asks for" (docs/services.md, trainer, *Site policy*):

- only local DP protects the site's records inside its own process (central DP adds noise at
  the aggregator, after the update left the site), so with ``max_epsilon`` set a job without
  local DP is declined (``local_dp_required``);
- the job's budget ``privacy.target_epsilon`` at ``privacy.delta`` is what the job may spend on
  each client (the accountant stops it there): above ``max_epsilon`` it is declined
  (``epsilon_too_large``);
- and whatever the budget says, the site counts itself: the epsilon of every round of this job
  it trained (RDP-composed, ``fedbus.privacy``) plus this round, with the round's noise
  multiplier, sample rate ``batch_size / n`` and ``local_epochs * ceil(n / batch_size)``
  steps on its ``n`` records, must stay within ``max_epsilon`` (``epsilon_too_large``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedbus.events import DeclineReason, PrivacyMode, PrivacySpec, TrainingConfig
from fedbus.privacy import (
    GaussianSteps,
    PrivacyError,
    compute_epsilon_composed,
    noise_multiplier_for,
)

__all__ = [
    "DAY",
    "Decision",
    "PolicyFileError",
    "RoundAsk",
    "SitePolicy",
    "TrainedRound",
    "decide",
    "load_policy",
    "round_mechanism",
]

DAY = timedelta(hours=24)
"""The window of ``max_rounds_per_day``: any 24 hours, not a calendar day."""


class SitePolicy(BaseModel):
    """What this site accepts; every rule is off when absent (the empty policy accepts all).

    Attributes
    ----------
    max_epsilon
        The largest epsilon (at the job's delta) a job may spend on this site's data.
    max_delta
        The largest delta a job may use (an epsilon means little at a large delta).
    allowed_models
        Model names this site trains; empty: any.
    max_rounds_per_day
        Rounds this trainer trains in any 24 hours.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_delta: float | None = Field(default=None, gt=0, lt=1)
    allowed_models: list[str] = Field(default_factory=list)
    max_rounds_per_day: int | None = Field(default=None, ge=0)


class _Loader(yaml.SafeLoader):
    """YAML's safe loader that also reads ``1e-5`` as a float (YAML 1.2, JSON), not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class PolicyFileError(ValueError):
    """The site policy file is missing, unreadable or invalid (the message names it)."""


def load_policy(path: Path) -> SitePolicy:
    """Read a YAML (or JSON) policy file; unknown keys and wrong types are refused.

    Raises
    ------
    PolicyFileError
        Naming the file and every problem.
    """
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyFileError(f"site policy {path}: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyFileError(f"site policy {path}: expected a mapping of rules")
    try:
        return SitePolicy.model_validate(raw, strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyFileError(f"site policy {path}: {problems}") from exc


@dataclass(frozen=True)
class RoundAsk:
    """What a round asks of this site, from the round's own fields.

    Attributes
    ----------
    job_id, round
        Which round.
    model
        The model it trains.
    privacy
        The round's privacy spec (``noise_multiplier`` filled in by orchestration).
    training
        Epochs and batch size (the round's steps and sample rate on ``num_samples``).
    num_samples
        Records of the dataset this site trains the round on.
    """

    job_id: str
    round: int
    model: str
    privacy: PrivacySpec
    training: TrainingConfig
    num_samples: int


@dataclass(frozen=True)
class TrainedRound:
    """A round this site accepted: when, of which job, and the DP it runs (None: no DP)."""

    time: datetime
    job_id: str
    mechanism: GaussianSteps | None


@dataclass(frozen=True)
class Decision:
    """The rules a round breaks; none: train it.

    ``retry_after_s`` is None when a reason holds for the whole job (model, privacy), else the
    seconds until the daily limit frees a slot.
    """

    reasons: tuple[DeclineReason, ...] = ()
    retry_after_s: int | None = None

    @property
    def accepted(self) -> bool:
        """True when no rule is broken."""
        return not self.reasons


def round_mechanism(ask: RoundAsk) -> GaussianSteps | None:
    """The DP-SGD mechanism the round runs here (None without local DP).

    Without a noise multiplier in the round the executor derives one so that this round alone
    spends ``target_epsilon``: the same derivation is used here.

    Raises
    ------
    PrivacyError
        When the round's privacy parameters cannot be turned into a mechanism.
    """
    p = ask.privacy
    if p.mode is not PrivacyMode.LOCAL_DP or ask.num_samples <= 0:
        return None
    batch = ask.training.batch_size
    rate = min(1.0, batch / ask.num_samples)
    steps = ask.training.local_epochs * math.ceil(ask.num_samples / batch)
    noise = p.noise_multiplier
    if noise is None:
        if p.target_epsilon is None or p.delta is None:
            return None
        noise = noise_multiplier_for(
            target_epsilon=p.target_epsilon, delta=p.delta, sample_rate=rate, steps=steps
        )
    return GaussianSteps(noise_multiplier=noise, sample_rate=rate, steps=steps)


def decide(
    policy: SitePolicy, ask: RoundAsk, *, history: Sequence[TrainedRound], now: datetime
) -> Decision:
    """Whether this site trains ``ask``: every rule it breaks, with the policy's limit.

    ``history`` is what this site accepted before (at least the last 24 hours and every round
    of ``ask.job_id``).
    """
    reasons = [*_model_reasons(policy, ask), *_privacy_reasons(policy, ask, history)]
    permanent = bool(reasons)
    daily, wait = _daily_reason(policy, history, now)
    reasons += daily
    return Decision(tuple(reasons), None if permanent or not daily else wait)


def _model_reasons(policy: SitePolicy, ask: RoundAsk) -> list[DeclineReason]:
    if not policy.allowed_models or ask.model in policy.allowed_models:
        return []
    allowed = ", ".join(policy.allowed_models)
    message = f"model {ask.model!r} is not allowed at this site (allowed_models: {allowed})"
    return [DeclineReason(code="model_not_allowed", message=message)]


def _privacy_reasons(
    policy: SitePolicy, ask: RoundAsk, history: Sequence[TrainedRound]
) -> list[DeclineReason]:
    limit, p = policy.max_epsilon, ask.privacy
    reasons: list[DeclineReason] = []
    if policy.max_delta is not None and p.delta is not None and p.delta > policy.max_delta:
        message = f"the job uses delta {p.delta:g}; this site accepts at most {policy.max_delta:g}"
        reasons.append(DeclineReason(code="delta_too_large", message=message + " (max_delta)"))
    if limit is None:
        return reasons
    if p.mode is not PrivacyMode.LOCAL_DP or p.target_epsilon is None or p.delta is None:
        message = (
            f"the job uses privacy mode {p.mode.value}; this site trains only with local DP "
            f"at epsilon <= {limit:g} (max_epsilon)"
        )
        return [*reasons, DeclineReason(code="local_dp_required", message=message)]
    if p.target_epsilon > limit:
        message = (
            f"the job asks for epsilon {p.target_epsilon:g} (privacy.target_epsilon, at delta "
            f"{p.delta:g}); this site accepts at most {limit:g} (max_epsilon)"
        )
        return [*reasons, DeclineReason(code="epsilon_too_large", message=message)]
    spent = _job_epsilon(ask, history, p.delta)
    if spent is not None and spent > limit:
        message = (
            f"with this round this site's data would have spent epsilon {spent:.4g} in the job "
            f"(at delta {p.delta:g}, noise multiplier {p.noise_multiplier}); this site accepts "
            f"at most {limit:g} (max_epsilon)"
        )
        reasons.append(DeclineReason(code="epsilon_too_large", message=message))
    return reasons


def _job_epsilon(ask: RoundAsk, history: Sequence[TrainedRound], delta: float) -> float | None:
    """This site's epsilon in the job after this round (RDP-composed), None if unknowable."""
    try:
        now = round_mechanism(ask)
        if now is None:
            return None
        before = [t.mechanism for t in history if t.job_id == ask.job_id and t.mechanism]
        return compute_epsilon_composed(history=[*before, now], delta=delta)
    except PrivacyError:
        return math.inf  # parameters no accountant can bound: spends without limit


def _daily_reason(
    policy: SitePolicy, history: Sequence[TrainedRound], now: datetime
) -> tuple[list[DeclineReason], int | None]:
    limit = policy.max_rounds_per_day
    if limit is None:
        return [], None
    recent = sorted(t.time for t in history if now - DAY < t.time <= now)
    if len(recent) < limit:
        return [], None
    frees = recent[len(recent) - limit] + DAY if limit else now + DAY
    wait = max(1, math.ceil((frees - now).total_seconds()))
    message = (
        f"this site trains at most {limit} round(s) in any 24 hours (max_rounds_per_day) and "
        f"trained {len(recent)}; the next slot frees at {frees.isoformat()}"
    )
    return [DeclineReason(code="daily_round_limit", message=message)], wait
