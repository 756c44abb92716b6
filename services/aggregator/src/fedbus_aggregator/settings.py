"""The aggregator's settings: ``FEDBUS_*`` environment variables over the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from fedbus.settings import FedbusSettings

__all__ = ["AggregatorSettings"]


class AggregatorSettings(FedbusSettings):
    """Settings of the aggregator service.

    Attributes
    ----------
    consumer_group
        Kafka consumer group (``FEDBUS_CONSUMER_GROUP``); tests give each instance its own.
    eval_data
        Dataset name -> held-out ``test.parquet`` (``FEDBUS_EVAL_DATA``, a JSON object);
        ``--eval-data NAME=PATH`` on the command line adds to it.
    eval_device
        Where server-side evaluation runs (``auto``, ``cpu``, ``cuda``, ...).
    deadline_poll_seconds
        How often rounds past their deadline are looked for.
    max_update_norm
        Optional bound on an update's L2 norm; larger updates are rejected.
    update_cache_mb
        MiB of accepted updates kept in memory from judging to combining
        (``FEDBUS_UPDATE_CACHE_MB``; 0: download each again when the round closes).
    grant_grace_s
        Seconds past a round's deadline that its trainers' presigned URLs keep working
        (``FEDBUS_GRANT_GRACE_S``): an upload started just before the deadline still lands.
    minio_public_endpoint
        The MinIO endpoint trainers reach (``FEDBUS_MINIO_PUBLIC_ENDPOINT``), signed into
        their URLs; unset: ``FEDBUS_MINIO_ENDPOINT``, the aggregator's own.
    """

    service_name: str = "aggregator"
    consumer_group: str = "aggregator"
    eval_data: dict[str, Path] = Field(default_factory=dict)
    eval_device: str = "auto"
    deadline_poll_seconds: float = Field(default=0.5, gt=0)
    max_update_norm: float | None = Field(default=None, gt=0)
    update_cache_mb: int = Field(default=256, ge=0)
    grant_grace_s: float = Field(default=300.0, ge=0)
    minio_public_endpoint: str | None = None
    # Updates come in bursts and some handlers take a while (aggregation, evaluation): with
    # Kafka's 500 ms, a burst's later updates waited up to that long behind an idle fetch.
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
