"""The model registry's settings (``FEDBUS_*`` variables over the shared base)."""

from __future__ import annotations

from pydantic import Field

from fedbus.settings import FedbusSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(FedbusSettings):
    """Shared Kafka/MinIO/PostgreSQL/HTTP settings plus the registry's own.

    Attributes
    ----------
    consumer_group
        ``FEDBUS_CONSUMER_GROUP``: tests run several registries side by side with distinct groups.
    register_cancelled
        ``FEDBUS_REGISTER_CANCELLED``: also register cancelled jobs that have a final model.
    download_url_ttl_s
        ``FEDBUS_DOWNLOAD_URL_TTL_S``: lifetime of the presigned ``download_url`` links.
    register_round_checkpoints
        ``FEDBUS_REGISTER_ROUND_CHECKPOINTS``: serve every round's global model of a job as a
        checkpoint (``GET /v1/jobs/{job_id}/checkpoints``).
    ledger_wait_s
        ``FEDBUS_LEDGER_WAIT_S``: how long a DP job's ``job.completed`` waits for the privacy
        accountant's ``budget.updated`` of its rounds before it is refused (dead-lettered).
    registry_serve_artifacts
        ``FEDBUS_REGISTRY_SERVE_ARTIFACTS``: serve each version's decrypted, verified weights
        at ``GET /v1/models/{name}/versions/{v}/artifact`` (the gateway's predictions read
        them there); false: no such route, and the gateway cannot serve predictions.
    """

    service_name: str = "model-registry"
    consumer_group: str = "model-registry"
    register_cancelled: bool = False
    download_url_ttl_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    register_round_checkpoints: bool = False
    ledger_wait_s: float = Field(default=900.0, gt=0, le=7 * 24 * 3600)
    registry_serve_artifacts: bool = True
