"""The one dependency object the gateway's event handlers take."""

from __future__ import annotations

from dataclasses import dataclass

from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.store import JobStore

__all__ = ["Deps"]


@dataclass(frozen=True)
class Deps:
    """What the gateway's event handlers need.

    Attributes
    ----------
    jobs
        The job read model the REST API answers from.
    hub
        The live ``/events`` streams, fed every consumed event of their job.
    """

    jobs: JobStore
    hub: JobEventHub
