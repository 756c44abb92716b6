"""The site gate: the trainer's handler asks it before a round trains.

It applies the site policy (:mod:`fedbus_trainer.site_policy`) to a round with this site's
history (:class:`~fedbus_trainer.site_log.SiteLog`), counts an accepted round before it
trains, and turns a refusal into the ``round.declined`` the trainer publishes instead of
training (and instead of an update or a failed ``progress``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.events import RoundDeclined, child_traceparent, utc_now
from fedbus.privacy import PrivacyError
from fedbus_trainer.site_log import SiteLog
from fedbus_trainer.site_policy import (
    Decision,
    RoundAsk,
    SitePolicy,
    TrainedRound,
    decide,
    round_mechanism,
)

__all__ = ["SiteGate", "declined_event"]

log = logging.getLogger(__name__)


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
