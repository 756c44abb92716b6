"""What this trainer already submitted, kept in a small JSON file that survives restarts.

Kafka delivers ``round.assigned`` at least once, and the aggregator assigns the same
``round.started`` again (with new URLs) when that event reaches it again. The trainer records
the ``update.submitted`` it emits for each (job, round, ``round.started`` event id) *before*
the consumer commits; when an assignment of the same attempt comes again (a redelivery
after a crash or a restart, or a new grant) the stored event is emitted again, unchanged,
instead of training twice. A retried round (same job and round, a new ``round.started``)
trains again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from fedbus.events import UpdateSubmitted, decode, encode

__all__ = ["SubmittedLog", "write_json_atomically"]

log = logging.getLogger(__name__)


class SubmittedLog:
    """Submitted updates by (job, round, attempt event id), in memory and optionally on disk.

    Parameters
    ----------
    path
        The JSON file; ``None`` keeps the log in memory only (unit tests).
    keep
        How many recent entries to keep; older rounds are long finished.
    """

    def __init__(self, path: Path | None = None, *, keep: int = 1000) -> None:
        self._path = path
        self._keep = keep
        self._entries: dict[str, str] = _read(path) if path is not None else {}

    @staticmethod
    def _key(job_id: str, round_number: int, attempt_id: str) -> str:
        return f"{job_id}|{round_number}|{attempt_id}"

    def get(self, job_id: str, round_number: int, attempt_id: str) -> UpdateSubmitted | None:
        """The update emitted for this attempt, or None when it was never submitted."""
        raw = self._entries.get(self._key(job_id, round_number, attempt_id))
        if raw is None:
            return None
        event = decode(raw.encode())
        return event if isinstance(event, UpdateSubmitted) else None

    def record(self, attempt_id: str, event: UpdateSubmitted) -> None:
        """Remember ``event`` as the answer to attempt ``attempt_id`` and persist at once."""
        self._entries[self._key(event.job_id, event.round, attempt_id)] = encode(event).decode()
        while len(self._entries) > self._keep:
            self._entries.pop(next(iter(self._entries)))
        self._write()

    def _write(self) -> None:
        if self._path is not None:
            write_json_atomically(self._path, self._entries)


def write_json_atomically(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` so a crash leaves the old file or the new one.

    Written to ``<path>.tmp``, flushed to disk, then renamed over ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        # A torn file only means finished rounds may train again; never refuse to start.
        log.warning("ignoring unreadable state file %s: %s", path, exc)
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
