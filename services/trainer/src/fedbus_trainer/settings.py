"""Trainer settings: the shared ``FEDBUS_*`` fields plus who this trainer is and what it holds.

A trainer holds no MinIO credentials and no PostgreSQL DSN: its storage is the presigned URLs
of each ``round.assigned``. Of the shared settings it uses Kafka's (its own principal), the
artifact keyring (it decrypts the global model and encrypts its update) and
``FEDBUS_MINIO_CA_FILE`` (to verify the object store behind the URLs).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from fedbus.events import check_client_id
from fedbus.settings import FedbusSettings, KafkaSecurityProtocol

__all__ = ["TrainerSettings"]


class TrainerSettings(FedbusSettings):
    """Configuration of one trainer process; the command line overrides these.

    Attributes
    ----------
    client_id
        The trainer's client id (``FEDBUS_CLIENT_ID``): 1 to 100 letters, digits, ``.``, ``_``
        and ``-``, not ``dlq`` (it names the topic ``round.assigned.<client_id>``).
    data
        ``NAME=PATH`` pairs separated by commas (``FEDBUS_DATA``); ``--data`` adds to them.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``FEDBUS_DEVICE``).
    consumer_group
        Kafka consumer group; empty means ``trainer-<client_id>``.
    heartbeat_seconds
        Seconds between ``trainer.heartbeat`` events.
    state_dir
        Where ``trainer-<client_id>/submitted.json`` remembers finished rounds.
    progress_interval_s
        Fewest seconds between two training ``progress`` events.
    compute_nice
        How far below the trainer's own priority its training thread runs
        (``FEDBUS_COMPUTE_NICE``, 0-19; 0 keeps it equal): heartbeats, downloads and uploads,
        and whatever shares its scheduling group, are not queued behind training.
    site_policy_file
        The site policy, a YAML or JSON file (``FEDBUS_SITE_POLICY_FILE``; docs/services.md,
        *A data owner's site policy*); None: every round is accepted.
    """

    service_name: str = "trainer"
    client_id: str = ""
    data: str = ""
    device: str = "auto"
    consumer_group: str = ""
    heartbeat_seconds: int = Field(default=2, ge=1)
    state_dir: Path = Path(".fedbus/state")
    progress_interval_s: float = Field(default=0.5, ge=0)
    compute_nice: int = Field(default=10, ge=0, le=19)
    site_policy_file: Path | None = None
    # Trainers are idle between rounds and receive one round.started at a time: a longer
    # long poll halves their idle fetches (each about 1 ms of CPU) at no cost in latency.
    kafka_fetch_max_wait_ms: int = Field(default=1000, ge=1, le=10_000)

    @field_validator("client_id")
    @classmethod
    def _client_id_names_a_topic(cls, value: str) -> str:
        return check_client_id(value) if value else value

    def insecure_values(self) -> list[str]:
        """What would be insecure for a trainer in production: plaintext Kafka, or holding
        storage or database credentials (:meth:`operator_secrets`).

        Neither MinIO credentials nor a DSN is asked for (a trainer has none); the object
        store's URLs must be https, which the artifact adapter checks on each one.
        """
        problems = []
        if self.kafka_security_protocol in {
            KafkaSecurityProtocol.PLAINTEXT,
            KafkaSecurityProtocol.SASL_PLAINTEXT,
        }:
            problems.append(f"Kafka security protocol is {self.kafka_security_protocol.value}")
        held = self.operator_secrets()
        if held:
            problems.append(
                f"a trainer holds no storage or database credentials, but {', '.join(held)} "
                "are set (give it its own env file: stack.py principal trainer <id> writes one)"
            )
        return problems + self.signing_problems()

    def operator_secrets(self) -> list[str]:
        """The settings a trainer must not hold that are set: MinIO keys and the DSN."""
        return [
            name
            for name, value in (
                ("FEDBUS_MINIO_ACCESS_KEY", self.minio_access_key),
                ("FEDBUS_MINIO_SECRET_KEY", self.minio_secret_key.get_secret_value()),
                ("FEDBUS_POSTGRES_DSN", self.postgres_dsn.get_secret_value()),
            )
            if value
        ]

    def foreign_kafka_user(self) -> str | None:
        """The Kafka user when it is not this trainer's own ``trainer-<client_id>``, else None
        (a warning: a deployment may name its principals otherwise)."""
        user = self.kafka_sasl_username
        if user and self.client_id and user != f"trainer-{self.client_id}":
            return f"FEDBUS_KAFKA_SASL_USERNAME ({user}, not trainer-{self.client_id})"
        return None

    def group_id(self) -> str:
        """The consumer group: ``consumer_group`` when set, else ``trainer-<client_id>``."""
        return self.consumer_group or f"trainer-{self.client_id}"

    def client_state_dir(self) -> Path:
        """This client's own state folder."""
        return self.state_dir / f"trainer-{self.client_id}"
