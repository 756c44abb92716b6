"""Enums and records shared by several events (Avro named types of the same name)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from fedbus.events.envelope import Int32, Int64, Metrics, Record

__all__ = [
    "AVRO_ENUM_DEFAULTS",
    "BaseModelRef",
    "DpUsage",
    "JobMode",
    "JobStatus",
    "LoraSpec",
    "LrSchedule",
    "ModelOptionValue",
    "ModelOptions",
    "ModelRef",
    "Optimizer",
    "Phase",
    "PrivacyGuarantee",
    "PrivacyMode",
    "PrivacySpec",
    "Strategy",
    "StrategySpec",
    "TrainerStatus",
    "TrainingConfig",
]


class JobMode(StrEnum):
    """How a job trains: over many trainers (federated) or on one (centralized)."""

    FEDERATED = "federated"
    CENTRALIZED = "centralized"


class PrivacyMode(StrEnum):
    """Which differential-privacy guarantee a job asks for."""

    NONE = "none"
    LOCAL_DP = "local_dp"
    CENTRAL_DP = "central_dp"


class Strategy(StrEnum):
    """Aggregation strategy."""

    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDAVGM = "fedavgm"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDADAGRAD = "fedadagrad"
    TRIMMED_MEAN = "trimmed_mean"
    MEDIAN = "median"
    KRUM = "krum"
    MULTI_KRUM = "multi_krum"


class Optimizer(StrEnum):
    """The trainers' local optimizer."""

    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class LrSchedule(StrEnum):
    """How the learning rate changes during one local training run."""

    CONSTANT = "constant"
    STEP = "step"
    COSINE = "cosine"


AVRO_ENUM_DEFAULTS: dict[type[StrEnum], str] = {
    Strategy: Strategy.FEDAVG.value,
    Optimizer: Optimizer.SGD.value,
    LrSchedule: LrSchedule.CONSTANT.value,
}
"""Enum-level Avro defaults: what a reader that does not know a newer symbol reads instead."""


class JobStatus(StrEnum):
    """How a job ended without failing."""

    COMPLETED = "completed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    """The step a job, round or client is in (``progress`` events)."""

    QUEUED = "queued"
    SCHEDULING = "scheduling"
    DOWNLOADING = "downloading"
    LOADING_DATA = "loading_data"
    TRAINING = "training"
    EVALUATING = "evaluating"
    UPLOADING = "uploading"
    AGGREGATING = "aggregating"
    ACCOUNTING = "accounting"
    REGISTERING = "registering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrainerStatus(StrEnum):
    """Whether a trainer takes work."""

    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"


ModelOptionValue = bool | Int64 | float | str | list[bool | Int64 | float | str] | None
"""One model option: a scalar, a flat list of scalars, or null (Avro: a union in a map)."""

ModelOptions = dict[str, ModelOptionValue]
"""A model's options (``JobSpec.model_options``), validated by the model plugin's schema."""


class ModelRef(Record):
    """A reference to model weights in the artifact store; weights never ride the bus."""

    object_key: str
    size_bytes: Int64 = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TrainingConfig(Record):
    """Local training hyperparameters of every trainer in a round."""

    local_epochs: Int32 = 1
    batch_size: Int32 = 32
    learning_rate: float = 0.01
    optimizer: Optimizer = Optimizer.SGD
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: LrSchedule = LrSchedule.CONSTANT
    lr_step_epochs: Int32 = 1
    lr_gamma: float = 0.1
    lr_min: float = 0.0


class StrategySpec(Record):
    """The aggregation strategy and its numeric options."""

    name: Strategy = Strategy.FEDAVG
    options: Metrics = Field(default_factory=dict)


class PrivacySpec(Record):
    """The differential privacy a job (or a round) asks for."""

    mode: PrivacyMode = PrivacyMode.NONE
    target_epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    clipping_norm: float | None = None


class LoraSpec(Record):
    """LoRA adapters on a model that declares LoRA targets; only adapters and head travel."""

    r: Int32 = 8
    alpha: Int32 = 16
    dropout: float = 0.0
    target_modules: list[str]
    trainable_modules: list[str] = Field(default_factory=lambda: ["head"])


class BaseModelRef(Record):
    """The frozen base weights a LoRA model's adapters apply to: model name and SHA-256."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DpUsage(Record):
    """The DP parameters actually applied, as the privacy accountant needs them."""

    noise_multiplier: float
    sample_rate: float
    steps: Int64
    clipping_norm: float


class PrivacyGuarantee(Record):
    """An (epsilon, delta) guarantee, its unit (``mode``) and how it was reached.

    The last four fields came with schema version 2 of ``job.completed`` and
    ``model.registered``; events of version 1 decode with them null.
    """

    mode: PrivacyMode
    epsilon: float
    delta: float
    accountant: str | None = None
    noise_multiplier: float | None = None
    clipping_norm: float | None = None
    rounds: Int32 | None = None
