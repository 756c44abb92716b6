"""Orchestration settings: ``FEDBUS_*`` environment variables on top of :class:`FedbusSettings`."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from fedbus.settings import FedbusSettings

__all__ = ["DEFAULT_KNOWN_MODELS", "OrchestrationSettings"]

DEFAULT_KNOWN_MODELS = ("cnn", "cnn-batchnorm", "minilm-classifier", "mlp")
"""The models ``fedbus_executor`` builds, mirrored: orchestration must not import torch.

``tests/unit/test_known_models.py`` checks that this list and the executor's registry agree.
"""


class OrchestrationSettings(FedbusSettings):
    """What orchestration reads from the environment (``FEDBUS_`` prefix).

    ``FEDBUS_KNOWN_MODELS`` and ``FEDBUS_KNOWN_DATASETS`` are comma-separated lists (or JSON).
    """

    service_name: str = "orchestration"
    consumer_group: str = "orchestration"
    known_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_KNOWN_MODELS)
    )
    known_datasets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    round_grace_seconds: float = Field(default=5.0, ge=0)
    max_round_retries: int = Field(default=2, ge=0)
    max_rollbacks: int = Field(default=2, ge=0)
    heartbeat_staleness_factor: float = Field(default=3.0, gt=0)
    divergence_factor: float = Field(default=10.0, gt=1)
    deadline_check_seconds: float = Field(default=1.0, gt=0)

    @field_validator("known_models", "known_datasets", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value
