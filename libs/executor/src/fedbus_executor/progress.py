"""Progress reports from the executor to whoever runs it (trainer, CLI, test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProgressCallback", "ProgressEvent", "discard_progress"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    Attributes
    ----------
    phase
        ``setup``, ``train``, ``epoch_end``, ``checkpoint``, ``done`` or ``evaluate``.
    message
        A human sentence.
    details
        Numbers such as ``epoch``, ``step``, ``total``, ``loss``.
    """

    phase: str
    message: str
    details: dict[str, float | int | str] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def discard_progress(event: ProgressEvent) -> None:
    """Default callback: ignore the event."""
    del event
