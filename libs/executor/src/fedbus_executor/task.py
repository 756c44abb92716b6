"""The training task (what to do) and its result (what came out)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, overload

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedbus.events import LoraSpec
from fedbus_executor.dataset import DatasetSpec, load_spec
from fedbus_executor.errors import DatasetError
from fedbus_executor.weights import StateDict, sha256_hex, state_dict_to_bytes

__all__ = [
    "CheckpointSettings",
    "DPSettings",
    "DataRef",
    "LoRASettings",
    "ModelRef",
    "PrivacyReport",
    "TrainingMetrics",
    "TrainingResult",
    "TrainingTask",
    "lora_settings",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DPSettings(BaseModel):
    """DP-SGD: give ``noise_multiplier`` or ``target_epsilon`` (with ``delta``), not both."""

    model_config = _FROZEN
    noise_multiplier: float | None = Field(default=None, ge=0)
    target_epsilon: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    fix_incompatible: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("dp needs exactly one of noise_multiplier or target_epsilon")
        return self


class LoRASettings(BaseModel):
    """LoRA adapters (PEFT) on ``target_modules``; ``trainable_modules`` stay trainable too."""

    model_config = _FROZEN
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("query", "value")
    trainable_modules: tuple[str, ...] = ("head",)


@overload
def lora_settings(spec: LoraSpec) -> LoRASettings: ...
@overload
def lora_settings(spec: None) -> None: ...
@overload
def lora_settings(spec: LoraSpec | None) -> LoRASettings | None: ...


def lora_settings(spec: LoraSpec | None) -> LoRASettings | None:
    """The executor's LoRA settings for a job's or round's ``lora`` (the same field names)."""
    return None if spec is None else LoRASettings.model_validate(spec.model_dump())


class CheckpointSettings(BaseModel):
    """Per-epoch checkpoints in ``directory``, AES-GCM encrypted when ``encrypt``."""

    model_config = _FROZEN
    directory: str
    encrypt: bool = False
    key_env: str = "FEDBUS_CHECKPOINT_KEY"
    keep: int = Field(default=2, ge=1)


class DataRef(BaseModel):
    """A Parquet file and its declared spec (inline, or from the dataset manifest)."""

    model_config = _FROZEN
    path: str
    spec: DatasetSpec | None = None
    manifest: str | None = None

    def resolve_spec(self) -> DatasetSpec:
        """The inline spec, else the manifest's, else ``manifest.json`` next to the data."""
        if self.spec is not None:
            return self.spec
        if self.manifest is not None:
            return load_spec(self.manifest)
        for parent in Path(self.path).parents:
            if (parent / "manifest.json").is_file():
                return load_spec(parent / "manifest.json")
        raise DatasetError(self.path, "no dataset spec: give `spec` or `manifest`")


class ModelRef(BaseModel):
    """A registered model name and its builder arguments."""

    model_config = _FROZEN
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TrainingTask(BaseModel):
    """Everything one local training run needs; build it from a job spec or YAML."""

    model_config = _FROZEN
    model: ModelRef
    data: DataRef
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    learning_rate: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_step_epochs: int = Field(default=1, ge=1)
    lr_gamma: float = Field(default=0.1, gt=0, le=1)
    lr_min: float = Field(default=0.0, ge=0)
    seed: int = 0
    device: str = "auto"
    fedprox_mu: float | None = Field(default=None, ge=0)
    dp: DPSettings | None = None
    lora: LoRASettings | None = None
    initial_weights: bytes | None = Field(default=None, repr=False)
    progress_every: int = Field(default=50, ge=1)
    checkpoint: CheckpointSettings | None = None

    def fingerprint(self) -> str:
        """Hash of everything that shapes the run (a checkpoint resumes only a same task)."""
        fields = self.model_dump(
            mode="json", exclude={"checkpoint", "progress_every", "initial_weights", "device"}
        )
        # Fields added later count only when set: a checkpoint of an older task still fits.
        for name, default in _LATER_DEFAULTS.items():
            if fields.get(name) == default:
                del fields[name]
        weights = sha256_hex(self.initial_weights) if self.initial_weights else ""
        return hashlib.sha256(f"{sorted(fields.items())}{weights}".encode()).hexdigest()


_LATER_DEFAULTS: dict[str, object] = {
    "nesterov": False,
    "lr_schedule": "constant",
    "lr_step_epochs": 1,
    "lr_gamma": 0.1,
    "lr_min": 0.0,
}


@dataclass(frozen=True)
class PrivacyReport:
    """DP facts of a run, enough to re-account it elsewhere."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    delta: float
    max_grad_norm: float


@dataclass(frozen=True)
class TrainingMetrics:
    """Metrics of the last epoch (training loss and accuracy) and of the whole run."""

    loss: float
    accuracy: float
    duration_s: float
    device: str
    epochs: int
    steps: int


@dataclass(frozen=True)
class TrainingResult:
    """New weights, their change from the start, and the facts of the run.

    With LoRA, ``weights`` and ``delta`` hold only the adapter and head tensors.
    """

    weights: StateDict = field(repr=False)
    delta: StateDict = field(repr=False)
    num_samples: int
    metrics: TrainingMetrics
    privacy: PrivacyReport | None
    trainable_parameters: int
    total_parameters: int
    device_fallback_reason: str | None = None
    resumed_from_epoch: int | None = None

    @property
    def trainable_fraction(self) -> float:
        """Share of the model's parameters that training changed."""
        return self.trainable_parameters / max(1, self.total_parameters)

    def weights_bytes(self) -> bytes:
        """``weights`` as safetensors bytes."""
        return state_dict_to_bytes(self.weights)

    def delta_bytes(self) -> bytes:
        """``delta`` as safetensors bytes."""
        return state_dict_to_bytes(self.delta)
