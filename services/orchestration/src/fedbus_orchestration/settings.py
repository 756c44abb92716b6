"""Orchestration settings: ``FEDBUS_*`` environment variables on top of :class:`FedbusSettings`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from fedbus.settings import FedbusSettings

__all__ = ["OrchestrationSettings", "load_model_catalog"]


class OrchestrationSettings(FedbusSettings):
    """What orchestration reads from the environment (``FEDBUS_`` prefix).

    ``FEDBUS_KNOWN_DATASETS`` is a comma-separated list (or JSON). There is no list of
    models: a model is known when a live trainer announces it in its heartbeat.
    """

    service_name: str = "orchestration"
    consumer_group: str = "orchestration"
    known_datasets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_catalog: str | None = None
    """``FEDBUS_MODEL_CATALOG``: what ``fedbus models available --json`` prints in the
    aggregator's image, as a file path or as the JSON itself (from a ConfigMap). When set, a
    job whose model the aggregator cannot build, or whose ``model_options`` its schema
    refuses, is rejected at admission instead of failing when the aggregator builds it."""
    round_grace_seconds: float = Field(default=5.0, ge=0)
    max_round_retries: int = Field(default=2, ge=0)
    max_rollbacks: int = Field(default=2, ge=0)
    heartbeat_staleness_factor: float = Field(default=3.0, gt=0)
    divergence_factor: float = Field(default=10.0, gt=1)
    deadline_check_seconds: float = Field(default=1.0, gt=0)

    @field_validator("known_datasets", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value


def load_model_catalog(source: str | None) -> dict[str, dict[str, Any]]:
    """Each model's options JSON Schema in the catalog ``source`` ({} for None or empty).

    ``source`` is JSON (starting with ``{`` or ``[``) or the path of a file holding it: what
    ``fedbus models available --json`` prints (``{"models": [...]}``) or a bare list of
    ``fedbus_executor.capabilities()`` entries; each entry needs ``name`` and
    ``options_schema``.

    Raises
    ------
    ValueError
        When it is not such a catalog.
    """
    if not source or not source.strip():
        return {}
    text = source if source.lstrip()[:1] in ("{", "[") else None
    path = "FEDBUS_MODEL_CATALOG" if text is not None else source
    if text is None:
        text = Path(source).read_text(encoding="utf-8")
    loaded = json.loads(text)
    entries = loaded.get("models") if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list):
        raise ValueError(f"{path}: not a model catalog (fedbus models available --json)")
    catalog: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("options_schema"), dict)):  # fmt: skip
            raise ValueError(f"{path}: each model needs a name and an options_schema")
        catalog[entry["name"]] = entry["options_schema"]
    return catalog
