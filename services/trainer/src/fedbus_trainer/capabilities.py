"""What a trainer announces it can build: its models, and for each dataset which of them fit.

Computed once at start-up (torch and the installed ``fedbus.models`` plugins are here) and
sent in every ``trainer.heartbeat``; orchestration admits a job by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedbus.datalayout import MANIFEST_FILE
from fedbus.events import DatasetInfo, ModelCapability, ModelProblem
from fedbus_executor.plugins import capabilities, model_problems
from fedbus_trainer.datasets import LocalDataset

__all__ = ["announced_datasets", "announced_models", "manifest_sha256"]


def announced_models(entries: Iterable[dict[str, Any]] | None = None) -> list[ModelCapability]:
    """The models this environment builds (``fedbus_executor.capabilities()`` by default)."""
    return [
        ModelCapability(
            name=e["name"],
            package=e["package"],
            version=e["version"],
            options_schema=json.dumps(e["options_schema"], sort_keys=True),
            lora_targets=list(e.get("lora_targets") or ()),
        )
        for e in (capabilities() if entries is None else entries)
    ]


def manifest_sha256(data_file: Path) -> str | None:
    """SHA-256 of the ``manifest.json`` the executor reads for ``data_file`` (None: none)."""
    for parent in data_file.parents:
        manifest = parent / MANIFEST_FILE
        if manifest.is_file():
            return hashlib.sha256(manifest.read_bytes()).hexdigest()
    return None


def announced_datasets(
    datasets: Iterable[LocalDataset], models: Iterable[ModelCapability]
) -> list[DatasetInfo]:
    """Each dataset with its facts and, per model, buildable with default options or why not."""
    names = [m.name for m in models]
    infos = []
    for data in datasets:
        buildable: list[str] = []
        problems: list[ModelProblem] = []
        for name in names:
            found = model_problems(name, None, data.spec)
            if found:
                text = "; ".join(p.message for p in found)
                problems.append(ModelProblem(model=name, problem=text))
            else:
                buildable.append(name)
        infos.append(
            DatasetInfo(
                name=data.name,
                num_samples=data.num_samples,
                feature_shape=list(data.spec.feature_shape),
                classes=list(data.spec.classes),
                manifest_sha256=manifest_sha256(data.path),
                models=buildable,
                problems=problems,
            )
        )
    return infos
