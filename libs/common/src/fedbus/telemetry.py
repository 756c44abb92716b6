"""Logging and tracing set-up shared by every service.

Logs are JSON lines carrying the service, and the job id, round and trace id of the event
being handled (set with :func:`log_context`). Never log raw data or weights.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "log_context", "trace_id_of"]

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "fedbus_log_context", default=None
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (job_id, round, trace_id, client_id, ...) to every log line inside."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a W3C ``traceparent``; None when it is not one."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    return parts[1]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, context, error."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **(_context.get() or {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send JSON lines for ``service`` to stderr at ``level`` (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request's full URL at INFO: a presigned URL is a bearer credential.
    for noisy in ("aiokafka", "botocore", "urllib3", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
