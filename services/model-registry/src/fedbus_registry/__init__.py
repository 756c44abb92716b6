"""fedbus model registry: model versions, their metadata, lineage and privacy guarantee.

Consumes ``job.accepted``, ``round.completed`` and ``job.completed``; emits
``model.registered``; serves a read API (see :mod:`fedbus_registry.api`).
"""

from fedbus_registry.api import build_app, version_body
from fedbus_registry.deps import Deps
from fedbus_registry.handlers import HANDLERS, registered_event
from fedbus_registry.settings import RegistrySettings
from fedbus_registry.store import RegistryStore
from fedbus_registry.versions import (
    JobInfo,
    ModelSummary,
    ModelVersion,
    NewVersion,
    RoundRecord,
    model_name,
    new_version,
)

__all__ = [
    "HANDLERS",
    "Deps",
    "JobInfo",
    "ModelSummary",
    "ModelVersion",
    "NewVersion",
    "RegistrySettings",
    "RegistryStore",
    "RoundRecord",
    "build_app",
    "model_name",
    "new_version",
    "registered_event",
    "version_body",
]
