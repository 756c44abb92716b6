"""The rounds this site accepted, kept in its state directory so a restart forgets none.

The site policy counts from it: the rounds trained in the last 24 hours
(``max_rounds_per_day``) and the DP mechanism of every round of a job (the job's epsilon on
this site's data). An entry is written when a round is accepted, before it trains: a round that
then fails or is abandoned still counts (its data may have been used). One entry per
``round.started`` event: a redelivery of an accepted round is not counted twice.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fedbus.privacy import GaussianSteps
from fedbus_trainer.site_policy import DAY, TrainedRound
from fedbus_trainer.state import write_json_atomically

__all__ = ["SiteLog"]

log = logging.getLogger(__name__)

_KEEP = timedelta(days=30)


class SiteLog:
    """Accepted rounds by ``round.started`` event id, in memory and optionally on disk.

    Parameters
    ----------
    path
        The JSON file; ``None`` keeps the log in memory only (unit tests).
    keep_entries
        At most this many entries are kept (older ones go first, and so do entries older
        than 30 days): a job's epsilon counts only the rounds still kept.
    """

    def __init__(self, path: Path | None = None, *, keep_entries: int = 10_000) -> None:
        self._path = path
        self._keep = keep_entries
        self._entries: dict[str, dict[str, Any]] = _read(path) if path is not None else {}

    def accepted(self, attempt_id: str) -> bool:
        """Whether the round with this ``round.started`` event id was accepted before."""
        return attempt_id in self._entries

    def history(self, job_id: str, now: datetime) -> list[TrainedRound]:
        """Rounds accepted in the 24 hours before ``now``, and every kept round of ``job_id``."""
        rounds = (_round(e) for e in self._entries.values())
        return [r for r in rounds if r.job_id == job_id or r.time > now - DAY]

    def record(self, attempt_id: str, trained: TrainedRound) -> None:
        """Count an accepted round and persist at once (before it trains)."""
        m = trained.mechanism
        self._entries[attempt_id] = {
            "time": trained.time.isoformat(),
            "job_id": trained.job_id,
            "mechanism": None if m is None else [m.noise_multiplier, m.sample_rate, m.steps],
        }
        oldest = trained.time - _KEEP
        for key in [k for k, e in self._entries.items() if _round(e).time < oldest]:
            del self._entries[key]
        while len(self._entries) > self._keep:
            self._entries.pop(next(iter(self._entries)))
        self._write()

    def _write(self) -> None:
        if self._path is not None:
            write_json_atomically(self._path, self._entries)


def _round(entry: dict[str, Any]) -> TrainedRound:
    m = entry["mechanism"]
    mechanism = None if m is None else GaussianSteps(float(m[0]), float(m[1]), int(m[2]))
    return TrainedRound(datetime.fromisoformat(entry["time"]), str(entry["job_id"]), mechanism)


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        entries = {str(k): dict(v) for k, v in raw.items()}
        for entry in entries.values():
            _round(entry)  # every entry must parse, or the file is refused as a whole
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # Unlike the submitted log, forgetting would reset the daily limit and the job's
        # epsilon: refuse to start rather than train past the site's policy.
        raise ValueError(f"site log {path} is unreadable ({exc}); fix or remove it") from exc
    return entries
