"""Operational events: progress, trainer heartbeats, dead letters."""

from __future__ import annotations

import base64
from typing import ClassVar, Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Int64, Metrics, Record
from fedbus.events.records import Phase, TrainerStatus

__all__ = [
    "DatasetInfo",
    "DeadLetter",
    "KafkaHeader",
    "ModelCapability",
    "ModelProblem",
    "Progress",
    "TrainerHeartbeat",
    "b64",
]


def b64(raw: bytes) -> str:
    """Return ``raw`` as standard, padded base64 text (how dead letters carry bytes)."""
    return base64.b64encode(raw).decode("ascii")


class Progress(Event):
    """One meaningful step of a job, round or client."""

    type: Literal["progress"] = "progress"
    round: Int32 | None = None
    client_id: str | None = None
    phase: Phase
    message: str
    step: Int64 | None = None
    total: Int64 | None = None
    metrics: Metrics = Field(default_factory=dict)


class ModelProblem(Record):
    """Why a trainer cannot build one of its models for a dataset (its plugin's words)."""

    model: str
    problem: str


class DatasetInfo(Record):
    """A dataset a trainer holds, and which of its models it can build for it."""

    name: str
    num_samples: Int64 = Field(ge=0)
    feature_shape: list[Int64] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    manifest_sha256: str | None = None
    models: list[str] = Field(default_factory=list)
    problems: list[ModelProblem] = Field(default_factory=list)


class ModelCapability(Record):
    """A model a trainer can build: its plugin's name, package, version and options schema."""

    name: str
    package: str
    version: str
    options_schema: str = "{}"
    lora_targets: list[str] = Field(default_factory=list)


class TrainerHeartbeat(Event):
    """A trainer is alive; keyed by ``client_id`` with ``job_id`` empty."""

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["trainer.heartbeat"] = "trainer.heartbeat"
    client_id: str = Field(min_length=1)
    device: str
    datasets: list[DatasetInfo] = Field(default_factory=list)
    models: list[ModelCapability] = Field(default_factory=list)
    status: TrainerStatus
    capacity: Int32 = Field(ge=0)
    active_jobs: list[str] = Field(default_factory=list)
    interval_seconds: Int32 = Field(ge=1)

    def kafka_key(self) -> bytes | None:
        """Return the Kafka message key: the UTF-8 client id."""
        return self.client_id.encode("utf-8")


class KafkaHeader(Record):
    """One Kafka record header, its value base64 (None for a null value)."""

    key: str
    value_b64: str | None = None


class DeadLetter(Event):
    """A record a consumer could not handle, parked on ``<topic>.dlq`` with the reason."""

    type: Literal["dead.letter"] = "dead.letter"
    original_topic: str
    original_partition: Int32
    original_offset: Int64
    original_key_b64: str | None = None
    original_value_b64: str
    original_headers: list[KafkaHeader] = Field(default_factory=list)
    error_type: str
    error_message: str
    attempts: Int32 = 1

    def original_value(self) -> bytes:
        """Return the original record's value bytes."""
        return base64.b64decode(self.original_value_b64, validate=True)

    def kafka_key(self) -> bytes | None:
        """Return the Kafka message key: the original record's key, unchanged."""
        return self.original_key()

    def original_key(self) -> bytes | None:
        """Return the original record's key bytes, or None when it had no key."""
        if self.original_key_b64 is None:
            return None
        return base64.b64decode(self.original_key_b64, validate=True)
