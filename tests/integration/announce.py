"""What a trainer of this workspace announces, for tests that publish heartbeats themselves.

Orchestration admits a job only on trainers whose heartbeat announces its model as buildable
for the dataset (docs/jobspec.md, Admission); a test's stand-in trainer says what a real one
with the built-in and installed plugin models would, without holding any data.
"""

from __future__ import annotations

from typing import Any

from fedbus.events import DatasetInfo
from fedbus_trainer.capabilities import announced_models

__all__ = ["announced"]


def announced(dataset: str, num_samples: int) -> dict[str, Any]:
    """A heartbeat's ``datasets`` and ``models``: every installed model, buildable for
    ``dataset`` (``num_samples`` records)."""
    models = announced_models()
    held = DatasetInfo(name=dataset, num_samples=num_samples, models=[m.name for m in models])
    return {"models": models, "datasets": [held]}
