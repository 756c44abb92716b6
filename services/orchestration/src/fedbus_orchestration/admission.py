"""Admission by capabilities: can enough live trainers build the job's model on its dataset?

A trainer's heartbeat (schema version 2) announces the models it can build, each with its
options JSON Schema, and for each dataset it holds which of those models it can build for it
with default options (and, for the others, why not in the plugin's words). A job is admitted
when at least ``min_clients`` (one, centralized) fresh trainers holding its dataset

1. announce its model,
2. accept its ``model_options`` (:func:`fedbus.jobspec.model_options_problems` against the
   announced schema),
3. for a LoRA job, declare LoRA targets for the model (heartbeat version 3) that include
   every one of ``lora.target_modules``, and
4. list the model among those they can build for the dataset.

Otherwise the reasons say which step failed, naming the model, the option or the shape, and
the trainers concerned. Pure functions over :class:`~fedbus_orchestration.selection.TrainerInfo`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedbus.events import JobMode, JobSpec, RejectionReason, TrainerHeartbeat
from fedbus.jobspec import model_options_problems
from fedbus_orchestration.selection import TrainerInfo

__all__ = [
    "TrainerProblem",
    "capabilities_of",
    "capability_reasons",
    "catalog_reasons",
    "trainer_problems",
]

log = logging.getLogger(__name__)


def capabilities_of(event: TrainerHeartbeat) -> dict[str, Any]:
    """What a heartbeat announces, as the JSON orchestration keeps per trainer.

    A model whose options schema is not a JSON object is left out (logged): the trainer
    then does not count for jobs of that model.
    """
    models = {}
    for m in event.models:
        try:
            schema = json.loads(m.options_schema or "{}")
        except ValueError:
            schema = None
        if not isinstance(schema, dict):
            log.warning("trainer %s: model %r announced with an options schema that is not "
                        "a JSON object; ignored", event.client_id, m.name)  # fmt: skip
            continue
        models[m.name] = {"package": m.package, "version": m.version, "options_schema": schema,
                          "lora_targets": list(m.lora_targets)}  # fmt: skip
    datasets = {
        d.name: {"feature_shape": list(d.feature_shape), "classes": list(d.classes),
                 "manifest_sha256": d.manifest_sha256, "models": list(d.models),
                 "problems": {p.model: p.problem for p in d.problems}}
        for d in event.datasets
    }  # fmt: skip
    return {"models": models, "datasets": datasets}


@dataclass(frozen=True)
class TrainerProblem:
    """Why one trainer cannot train a job: a reason code, the field, the message."""

    code: str
    field: str
    message: str


def trainer_problems(trainer: TrainerInfo, spec: JobSpec) -> list[TrainerProblem]:
    """Why ``trainer`` cannot train ``spec`` ([]: it can). Stops at the first failed step."""
    caps = trainer.capabilities
    model = caps.get("models", {}).get(spec.model)
    if model is None:
        return [TrainerProblem("unknown_model", "spec.model", "does not announce it")]
    schema = model.get("options_schema") or {}
    options = model_options_problems(spec.model, spec.model_options, schema)
    if options:
        return [TrainerProblem("invalid_model_option", p.field, p.message) for p in options]
    lora = _lora_problems(spec, model.get("lora_targets") or [])
    if lora:
        return lora
    held = caps.get("datasets", {}).get(spec.dataset, {})
    if spec.model in held.get("models", []):
        return []
    shape = held.get("feature_shape", [])
    said = held.get("problems", {}).get(spec.model)
    message = said or f"does not list model {spec.model!r} as buildable for {spec.dataset!r}"
    return [TrainerProblem("dataset_incompatible", "spec.dataset",
                           f"{message} (feature shape {shape}, "
                           f"{len(held.get('classes', []))} classes)")]  # fmt: skip


def _lora_problems(spec: JobSpec, targets: Sequence[str]) -> list[TrainerProblem]:
    """A LoRA job needs a model that declares LoRA targets, and only those targets."""
    if spec.lora is None:
        return []
    if not targets:
        message = f"model {spec.model!r} declares no LoRA targets: it cannot train with LoRA"
        return [TrainerProblem("lora_unsupported", "spec.lora", message)]
    unknown = [m for m in spec.lora.target_modules if m not in targets]
    if not unknown:
        return []
    message = (
        f"{', '.join(map(repr, unknown))} not among the LoRA targets model {spec.model!r} "
        f"declares: {', '.join(targets)}"
    )
    return [TrainerProblem("invalid_lora_target", "spec.lora.target_modules", message)]


def _ids(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


_DETAILED = ("invalid_model_option", "lora_unsupported", "invalid_lora_target",
             "dataset_incompatible")  # fmt: skip
"""The reason codes listed one by one (field and message), each with its trainers."""


def capability_reasons(spec: JobSpec, holders: Sequence[TrainerInfo]) -> list[RejectionReason]:
    """The reasons ``holders`` (fresh trainers holding the dataset) cannot run ``spec`` ([]: ok)."""
    needed = 1 if spec.mode is JobMode.CENTRALIZED else spec.min_clients
    problems = {t.client_id: trainer_problems(t, spec) for t in holders}
    capable = sorted(c for c, p in problems.items() if not p)
    if len(capable) >= needed:
        return []
    by_code: dict[str, dict[tuple[str, str], list[str]]] = {}
    for client, found in sorted(problems.items()):
        for p in found:
            by_code.setdefault(p.code, {}).setdefault((p.field, p.message), []).append(client)
    model, dataset = spec.model, spec.dataset
    if capable:
        others = [
            f"{c} ({problems[c][0].code}: {problems[c][0].message})"
            for c in sorted(problems) if problems[c]
        ]  # fmt: skip
        message = (
            f"min_clients is {needed} but only {len(capable)} live trainer(s) holding dataset "
            f"{dataset!r} can build model {model!r} with these options: {_ids(capable)}"
            + (f"; the others: {'; '.join(others[:5])}" if others else "")
        )
        field = "spec.min_clients" if spec.mode is JobMode.FEDERATED else "spec.model"
        return [RejectionReason(code="too_few_clients", field=field, message=message)]
    if set(by_code) == {"unknown_model"}:
        announced = sorted({m for t in holders for m in t.capabilities.get("models", {})})
        message = (
            f"no live trainer holding dataset {dataset!r} can build model {model!r}: "
            f"{_ids(sorted(problems))} announce "
            + (", ".join(announced) if announced else "no models (heartbeats before version 2)")
        )
        return [RejectionReason(code="unknown_model", field="spec.model", message=message)]
    out = []
    for code in _DETAILED:
        for (field, text), clients in sorted(by_code.get(code, {}).items()):
            where = f"on trainer(s) {_ids(clients)}"
            if code == "dataset_incompatible":
                text = f"model {model!r} cannot be built for dataset {dataset!r} {where}: {text}"
            else:
                text = f"{text} ({where})"
            out.append(RejectionReason(code=code, field=field, message=text))
    return out


def catalog_reasons(
    spec: JobSpec, catalog: Mapping[str, Mapping[str, Any]] | None
) -> list[RejectionReason]:
    """What the aggregator's catalog (``FEDBUS_MODEL_CATALOG``) says ([] when none is set).

    The aggregator builds the global model: a model missing from its catalog is
    ``unknown_model``, options its schema refuses are ``invalid_model_option``.
    """
    if catalog is None:
        return []
    schema = catalog.get(spec.model)
    if schema is None:
        message = (
            f"the aggregator cannot build model {spec.model!r} (FEDBUS_MODEL_CATALOG lists "
            f"{', '.join(sorted(catalog)) or 'none'})"
        )
        return [RejectionReason(code="unknown_model", field="spec.model", message=message)]
    return [
        RejectionReason(code="invalid_model_option", field=p.field,
                        message=f"{p.message} (the aggregator's FEDBUS_MODEL_CATALOG)")
        for p in model_options_problems(spec.model, spec.model_options, schema)
    ]  # fmt: skip
