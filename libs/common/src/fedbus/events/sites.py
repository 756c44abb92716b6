"""Events of a data owner's site: a trainer declining a round its site policy refuses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Record

__all__ = ["DeclineReason", "RoundDeclined"]


class DeclineReason(Record):
    """One rule of the site policy the round breaks, with the policy's limit in the message."""

    code: str
    message: str


class RoundDeclined(Event):
    """A selected trainer will not train a round: its site policy refuses the job.

    ``retry_after_s`` is null when the decline holds for the whole job (the model, the privacy
    asked for); otherwise it is how many seconds after ``time`` the trainer may accept a round
    of this job again (its daily round limit frees a slot).
    """

    type: Literal["round.declined"] = "round.declined"
    round: Int32
    client_id: str
    started_event_id: str
    reasons: list[DeclineReason] = Field(min_length=1)
    retry_after_s: Int32 | None = Field(default=None, ge=0)
