"""The fedbus error hierarchy, split by what a consumer loop must do with a failure.

A consumer loop handles one event at a time and decides from the exception class alone:

- :class:`NonRetryableError`: the event itself is bad (it cannot be decoded, it breaks
  its schema, it asks for something impossible). Trying again cannot help, so the loop
  sends the original record to the topic's dead-letter topic (``<topic>.dlq``) with the
  reason attached, commits the offset and goes on.
- :class:`RetryableError`: something outside the event failed for now (a broker, MinIO
  or PostgreSQL is unreachable). The loop retries with bounded exponential backoff and
  dead-letters the record only when the retries are spent.
- Anything else is a bug: the process crashes and its supervisor restarts it, and the
  uncommitted event is delivered again.
"""

from __future__ import annotations

__all__ = ["FedbusError", "NonRetryableError", "RetryableError"]


class FedbusError(Exception):
    """Base class of every error that fedbus raises on purpose."""


class NonRetryableError(FedbusError):
    """A failure that the same input will always reproduce: dead-letter it, do not retry."""


class RetryableError(FedbusError):
    """A transient failure outside the event: retry with backoff, then dead-letter."""
