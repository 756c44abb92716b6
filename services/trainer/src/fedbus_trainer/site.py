"""The site gate: the trainer's handler asks it before a round trains.

It applies the site policy (:mod:`fedbus_trainer.site_policy`) to a round with this site's
history (:class:`~fedbus_trainer.site_log.SiteLog`), counts an accepted round before it
trains, and turns a refusal into the ``round.declined`` the trainer publishes instead of
training (and instead of an update or a failed ``progress``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from fedbus.events import (
    PrivacySpec,
    RoundDeclined,
    TrainingConfig,
    child_traceparent,
    utc_now,
)
from fedbus.privacy import PrivacyError
from fedbus_trainer.site_log import SiteLog
from fedbus_trainer.site_policy import (
    Decision,
    RoundAsk,
    SitePolicy,
    TrainedRound,
    decide,
    load_policy,
    round_mechanism,
)

__all__ = ["RoundFields", "SiteGate", "declined_event"]

log = logging.getLogger(__name__)

_KEEP_DECLINED = 1000
"""Declines remembered (in memory) to answer a repeated attempt with the same event."""


class RoundFields(Protocol):
    """The fields of a round the policy reads (``round.started`` and ``round.assigned`` have
    them)."""

    @property
    def job_id(self) -> str:
        """The job."""

    @property
    def round(self) -> int:
        """The round number."""

    @property
    def model(self) -> str:
        """The model name."""

    @property
    def privacy(self) -> PrivacySpec:
        """The round's privacy spec."""

    @property
    def training(self) -> TrainingConfig:
        """Epochs, batch size, learning rate."""

    @property
    def traceparent(self) -> str:
        """The round's trace context."""


@dataclass
class SiteGate:
    """The site policy with the history it counts from.

    Attributes
    ----------
    policy
        The site's rules (the empty policy accepts every round).
    log
        The rounds accepted so far (in the state directory in production).
    clock
        The time a round is decided and counted at.
    """

    policy: SitePolicy = field(default_factory=SitePolicy)
    log: SiteLog = field(default_factory=SiteLog)
    clock: Callable[[], datetime] = utc_now
    _declined: OrderedDict[str, RoundDeclined] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def load(cls, policy_file: Path | None, client_state_dir: Path) -> SiteGate:
        """The policy of ``policy_file`` (None: accept all) with the client's history.

        Raises
        ------
        PolicyFileError
            The policy file is missing or invalid (the message names it).
        ValueError
            ``<client_state_dir>/site-rounds.json`` is unreadable (the message names it).
        """
        policy = SitePolicy() if policy_file is None else load_policy(policy_file)
        return cls(policy, SiteLog(client_state_dir / "site-rounds.json"))

    def admit(self, ask: RoundAsk, *, attempt_id: str) -> Decision:
        """Decide whether this site trains ``ask``; an accepted round is counted at once.

        ``attempt_id`` is the id of the ``round.started`` the round belongs to: a redelivered
        round that was accepted is accepted again, and not counted twice.
        """
        if self.log.accepted(attempt_id):
            return Decision()
        now = self.clock()
        decision = decide(self.policy, ask, history=self.log.history(ask.job_id, now), now=now)
        if decision.accepted:
            try:
                mechanism = round_mechanism(ask)
            except PrivacyError:
                # Only without max_epsilon (decide() declines such a round otherwise): the
                # round counts towards the daily limit, with no epsilon the site could bound.
                mechanism = None
            self.log.record(attempt_id, TrainedRound(now, ask.job_id, mechanism))
        else:
            log.info("round declined: %s", ", ".join(r.code for r in decision.reasons))
        return decision

    def check(
        self, event: RoundFields, *, attempt_id: str, client_id: str, num_samples: int
    ) -> RoundDeclined | None:
        """The ``round.declined`` to publish instead of training ``event``; None: train it.

        ``num_samples``: the records of the dataset the round trains here (0 when it is not
        held: the round then fails as it would without a policy). An attempt declined before
        (the aggregator granting it again, or a redelivery) gets the same event again, same id.
        """
        if (earlier := self._declined.get(attempt_id)) is not None:
            return earlier
        ask = RoundAsk(
            job_id=event.job_id,
            round=event.round,
            model=event.model,
            privacy=event.privacy,
            training=event.training,
            num_samples=num_samples,
        )
        decision = self.admit(ask, attempt_id=attempt_id)
        if decision.accepted:
            return None
        declined = declined_event(
            decision,
            job_id=event.job_id,
            round_number=event.round,
            client_id=client_id,
            started_event_id=attempt_id,
            traceparent=event.traceparent,
        )
        self._declined[attempt_id] = declined
        while len(self._declined) > _KEEP_DECLINED:
            self._declined.popitem(last=False)
        return declined


def declined_event(
    decision: Decision,
    *,
    job_id: str,
    round_number: int,
    client_id: str,
    started_event_id: str,
    traceparent: str,
) -> RoundDeclined:
    """The ``round.declined`` that answers a refused round (``traceparent``: the round's)."""
    return RoundDeclined.create(
        source="trainer",
        job_id=job_id,
        traceparent=child_traceparent(traceparent),
        round=round_number,
        client_id=client_id,
        started_event_id=started_event_id,
        reasons=list(decision.reasons),
        retry_after_s=decision.retry_after_s,
    )
