"""Model plugins: every model comes from the entry-point group ``fedbus.models``.

A plugin is an object with

- ``name``: the model name a job gives (``JobSpec.model``);
- ``options``: a pydantic model class, the schema of the model's options
  (``JobSpec.model_options``); its defaults are the model's defaults;
- ``factory(options, facts) -> torch.nn.Module``: builds the model from validated
  ``options`` (an instance of ``options``) and the dataset's facts (a
  :class:`~fedbus_executor.dataset.DatasetSpec`: ``feature_shape``, ``num_classes``,
  ``classes``, ``kind``);
- optionally ``lora_targets`` (module names LoRA adapts) and ``encode_inputs``
  (``(LoadedDataset, **options) -> tuple[Tensor, ...]``, the model's input tensors;
  default: the numeric ``features`` column as one tensor).

:class:`ModelPlugin` is such an object; any object with these attributes works too. A
distribution declares its plugins in its ``pyproject.toml``::

    [project.entry-points."fedbus.models"]
    sample-convnet = "fedbus_example_models:SAMPLE_CONVNET"

``fedbus_executor`` declares its own models (cnn, cnn-batchnorm, mlp, minilm-classifier)
the same way. A plugin that fails to load is logged and listed with its error
(:func:`plugin_errors`); it never stops the process. :func:`register_model` adds a model in
this process only (tests, notebooks).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from fedbus_executor.dataset import DatasetSpec, LoadedDataset
from fedbus_executor.errors import ModelError

__all__ = [
    "ENTRY_POINT_GROUP",
    "InputEncoder",
    "ModelEntry",
    "ModelOptionsError",
    "ModelPlugin",
    "NoOptions",
    "OptionProblem",
    "PluginError",
    "capabilities",
    "image_inputs",
    "load_entries",
    "model_problems",
    "plugin_errors",
    "register_model",
    "reload_plugins",
    "validate_options",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fedbus.models"
"""The entry-point group models are found in."""

InputEncoder = Callable[..., tuple[torch.Tensor, ...]]
Factory = Callable[[Any, DatasetSpec], nn.Module]


def image_inputs(data: LoadedDataset, **_: Any) -> tuple[torch.Tensor, ...]:
    """Numeric datasets feed their feature array as the one model input."""
    if data.features is None:
        raise ModelError(f"dataset {data.spec.name!r} has no numeric features for this model")
    return (torch.from_numpy(data.features.copy()),)


class NoOptions(BaseModel):
    """The options of a model that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ModelPlugin:
    """A model a plugin package provides (point an entry point of ``fedbus.models`` at it).

    Attributes
    ----------
    name
        The model's name in job specs.
    factory
        ``factory(options, facts) -> nn.Module``; ``options`` is an instance of
        ``options``, ``facts`` the dataset's :class:`DatasetSpec`. Raise
        :class:`~fedbus_executor.errors.ModelError` when the dataset does not fit.
    options
        Pydantic model of the options (use ``extra="forbid"`` so that a misspelt option
        is refused); :class:`NoOptions` for none.
    lora_targets
        Names of the modules LoRA may adapt (empty: the model does not support LoRA).
    encode_inputs
        Makes the input tensors from a loaded dataset (default: :func:`image_inputs`).
    description
        One line for ``fedbus models available``.
    check
        ``check(options, facts)`` raises :class:`~fedbus_executor.errors.ModelError` when the
        model cannot be built for the dataset; for models too costly to build just to find
        out (default: :func:`model_problems` builds the model on the ``meta`` device).
    """

    name: str
    factory: Factory
    options: type[BaseModel] = NoOptions
    lora_targets: tuple[str, ...] = ()
    encode_inputs: InputEncoder | None = None
    description: str = ""
    check: Callable[[Any, DatasetSpec], None] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model this environment can build: its plugin and the distribution providing it."""

    name: str
    plugin: Any
    distribution: str
    version: str
    entry_point: str = ""

    @property
    def options(self) -> type[BaseModel]:
        """The options schema (a pydantic model class)."""
        schema: type[BaseModel] = getattr(self.plugin, "options", None) or NoOptions
        return schema

    @property
    def encode_inputs(self) -> InputEncoder:
        """The input encoder (default :func:`image_inputs`)."""
        encoder: InputEncoder | None = getattr(self.plugin, "encode_inputs", None)
        return encoder or image_inputs

    @property
    def lora_targets(self) -> tuple[str, ...]:
        """Module names LoRA may adapt."""
        return tuple(getattr(self.plugin, "lora_targets", None) or ())

    @property
    def description(self) -> str:
        """One line about the model (the plugin's, else its factory's docstring's first)."""
        text = getattr(self.plugin, "description", "") or ""
        if not text:
            doc = getattr(getattr(self.plugin, "factory", None), "__doc__", None) or ""
            text = doc.strip().splitlines()[0] if doc.strip() else ""
        return str(text)

    def build(self, options: BaseModel, facts: DatasetSpec) -> nn.Module:
        """The model for validated ``options`` and dataset ``facts``."""
        module = self.plugin.factory(options, facts)
        if not isinstance(module, nn.Module):
            raise ModelError(
                f"model {self.name!r} ({self.distribution}): factory returned "
                f"{type(module).__name__}, not a torch.nn.Module"
            )
        return module


@dataclass(frozen=True)
class PluginError:
    """An entry point of ``fedbus.models`` that could not be loaded, and why."""

    entry_point: str
    value: str
    distribution: str
    version: str
    error: str


@dataclass(frozen=True)
class OptionProblem:
    """One problem with a model's options: the option (None: the whole) and a message."""

    option: str | None
    message: str


class ModelOptionsError(ModelError):
    """Options a model's schema refuses; ``problems`` names each option."""

    def __init__(self, model: str, problems: list[OptionProblem]) -> None:
        self.model = model
        self.problems = problems
        listed = "; ".join(f"{p.option or '(options)'}: {p.message}" for p in problems)
        super().__init__(f"bad options for model {model!r}: {listed}")


@dataclass
class _Registry:
    entries: dict[str, ModelEntry] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    loaded: bool = False


_LOCK = threading.RLock()
_STATE = _Registry()
_LOCAL: dict[str, ModelEntry] = {}


def _dist(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "?", "?"
    return str(dist.metadata["Name"]), str(dist.version)


def _check_plugin(obj: Any, ep_name: str) -> str | None:
    for attr in ("name", "factory"):
        if not hasattr(obj, attr):
            return f"{type(obj).__name__} has no {attr!r}: not a model plugin"
    if not callable(obj.factory):
        return "its factory is not callable"
    options = getattr(obj, "options", NoOptions)
    if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
        return "its options are not a pydantic model class"
    if obj.name != ep_name:
        return f"entry point {ep_name!r} names a plugin called {obj.name!r}; use one name"
    return None


def _load() -> _Registry:
    state = _Registry(loaded=True)
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist, version = _dist(ep)
        try:
            obj = ep.load()
            problem = _check_plugin(obj, ep.name)
        except Exception as exc:  # a broken plugin must not take the process down
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None and ep.name in state.entries:
            first = state.entries[ep.name]
            problem = f"{ep.name!r} is already provided by {first.distribution} {first.version}"
        if problem is not None:
            logger.error(
                "model plugin %s (%s %s, %s) not loaded: %s", ep.name, dist, version, ep.value,
                problem,
            )  # fmt: skip
            state.errors.append(PluginError(ep.name, ep.value, dist, version, problem))
            continue
        state.entries[ep.name] = ModelEntry(ep.name, obj, dist, version, ep.value)
    return state


def load_entries() -> dict[str, ModelEntry]:
    """Every model this process can build, by name (entry points, then :func:`register_model`).

    The entry points are read once per process (:func:`reload_plugins` reads them again).
    """
    global _STATE
    with _LOCK:
        if not _STATE.loaded:
            _STATE = _load()
        return {**_STATE.entries, **_LOCAL}


def plugin_errors() -> list[PluginError]:
    """The entry points of ``fedbus.models`` that failed to load, with their errors."""
    load_entries()
    return list(_STATE.errors)


def reload_plugins() -> None:
    """Read the entry points again (after installing a distribution in this process)."""
    global _STATE
    with _LOCK:
        _STATE = _Registry()


class _Kwargs(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


def register_model(
    name: str, *, encode_inputs: InputEncoder = image_inputs
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(spec, **options) -> nn.Module`` under ``name`` in this process.

    For tests and notebooks; a package declares its models as entry points. The builder's
    keyword arguments are its options (not validated beyond the builder's signature).
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        def factory(options: BaseModel, facts: DatasetSpec) -> nn.Module:
            try:
                return builder(facts, **options.model_dump())
            except TypeError as exc:
                raise ModelError(f"bad arguments for model {name!r}: {exc}") from exc

        plugin = ModelPlugin(name, factory, _Kwargs, encode_inputs=encode_inputs)
        with _LOCK:
            _LOCAL[name] = ModelEntry(name, plugin, "(registered in process)", "", "")
        return builder

    return wrap


def _lookup(name: str) -> ModelEntry:
    entries = load_entries()
    try:
        return entries[name]
    except KeyError:
        known = sorted(entries)
        broken = [e.error for e in _STATE.errors if e.entry_point == name]
        why = f" (its plugin failed to load: {broken[0]})" if broken else ""
        raise ModelError(f"unknown model {name!r}{why}; known: {known}") from None


def validate_options(name: str, options: Mapping[str, Any] | None = None) -> BaseModel:
    """``options`` validated by model ``name``'s schema (its defaults fill the rest).

    Strict JSON validation: no coercion (``1`` is not ``true``, ``2.0`` not ``2``), as
    :func:`fedbus.jobspec.model_options_problems` checks the schema without the plugin.

    Raises
    ------
    ModelError
        When no model has that name.
    ModelOptionsError
        When the schema refuses the options; ``problems`` names each option.
    """
    entry = _lookup(name)
    try:
        text = json.dumps(dict(options or {}), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelOptionsError(name, [OptionProblem(None, f"not JSON: {exc}")]) from None
    try:
        # Strict, as JSON: what a job's options are on the bus (1 is not true, 2.0 not 2).
        return entry.options.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = [
            OptionProblem(
                str(err["loc"][0]) if err["loc"] else None,
                " ".join(f"item {p}" for p in err["loc"][1:]) + (" " if err["loc"][1:] else "")
                + err["msg"],
            )
            for err in exc.errors(include_url=False)
        ]  # fmt: skip
        raise ModelOptionsError(name, problems) from None


def model_problems(
    name: str, options: Mapping[str, Any] | None = None, facts: DatasetSpec | None = None
) -> list[OptionProblem]:
    """Why this environment cannot build ``name`` with ``options`` for ``facts`` ([]: it can).

    Unknown model: one problem with option None. Options the schema refuses: one per option.
    With ``facts``, the plugin's ``check`` runs, or else the model is built on PyTorch's
    ``meta`` device (no memory for weights), so that a dataset it does not fit is reported.
    """
    try:
        validated = validate_options(name, options)
    except ModelOptionsError as exc:
        return list(exc.problems)
    except ModelError as exc:
        return [OptionProblem(None, str(exc))]
    if facts is None:
        return []
    entry = _lookup(name)
    check = getattr(entry.plugin, "check", None)
    try:
        if check is not None:
            check(validated, facts)
        else:
            with torch.device("meta"):
                entry.build(validated, facts)
    except ModelError as exc:
        return [OptionProblem(None, str(exc))]
    except Exception as exc:  # a plugin's own failure is a reason, not a crash
        return [OptionProblem(None, f"model {name!r} cannot be built: {exc}")]
    return []


def capabilities() -> list[dict[str, Any]]:
    """What this environment can build, as JSON: for a heartbeat or a torch-free checker.

    One entry per model: ``name``, ``package``, ``version``, ``options_schema`` (the JSON
    Schema of its options, for :func:`fedbus.jobspec.model_options_problems`) and
    ``lora_targets``.
    """
    return [
        {
            "name": entry.name,
            "package": entry.distribution,
            "version": entry.version,
            "options_schema": entry.options.model_json_schema(),
            "lora_targets": list(entry.lora_targets),
        }
        for entry in sorted(load_entries().values(), key=lambda e: e.name)
    ]
