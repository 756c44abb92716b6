"""fedbus_executor: the one training executor (data, models, devices, DP, LoRA, checkpoints).

It knows nothing of Kafka: a trainer, a centralized job, a test or a laptop all call
``TrainingExecutor().train(task)``.
"""

from fedbus_executor.cache import DatasetCache
from fedbus_executor.checkpoint import CheckpointState, CheckpointStore
from fedbus_executor.crypto import key_from_env
from fedbus_executor.dataset import DatasetSpec, LoadedDataset, load_dataset, load_spec
from fedbus_executor.devices import DeviceChoice, DeviceProbe, TorchDeviceProbe, select_device
from fedbus_executor.errors import (
    CheckpointError,
    DatasetError,
    DeviceError,
    ExecutorError,
    ModelError,
    PrivacyConfigError,
)
from fedbus_executor.executor import EvaluationResult, TrainingExecutor
from fedbus_executor.init import base_weights_sha256, initial_weights, merged_weights, seeded_model
from fedbus_executor.models import available_models, build_model, get_model_entry, register_model
from fedbus_executor.partition import dirichlet_partition, iid_partition, label_histogram
from fedbus_executor.plugins import (
    ModelEntry,
    ModelOptionsError,
    ModelPlugin,
    NoOptions,
    OptionProblem,
    PluginError,
    capabilities,
    model_problems,
    plugin_errors,
    validate_options,
)
from fedbus_executor.prepare import PreparedDataset, PrepareOptions, prepare_dataset, write_parquet
from fedbus_executor.progress import ProgressCallback, ProgressEvent
from fedbus_executor.task import (
    CheckpointSettings,
    DataRef,
    DPSettings,
    LoRASettings,
    ModelRef,
    PrivacyReport,
    TrainingMetrics,
    TrainingResult,
    TrainingTask,
    lora_settings,
)
from fedbus_executor.training import warm_up
from fedbus_executor.weights import (
    StateDict,
    bytes_to_state_dict,
    sha256_hex,
    state_dict_to_bytes,
)

__all__ = [
    "CheckpointError",
    "CheckpointSettings",
    "CheckpointState",
    "CheckpointStore",
    "DPSettings",
    "DataRef",
    "DatasetCache",
    "DatasetError",
    "DatasetSpec",
    "DeviceChoice",
    "DeviceError",
    "DeviceProbe",
    "EvaluationResult",
    "ExecutorError",
    "LoRASettings",
    "LoadedDataset",
    "ModelEntry",
    "ModelError",
    "ModelOptionsError",
    "ModelPlugin",
    "ModelRef",
    "NoOptions",
    "OptionProblem",
    "PluginError",
    "PrepareOptions",
    "PreparedDataset",
    "PrivacyConfigError",
    "PrivacyReport",
    "ProgressCallback",
    "ProgressEvent",
    "StateDict",
    "TorchDeviceProbe",
    "TrainingExecutor",
    "TrainingMetrics",
    "TrainingResult",
    "TrainingTask",
    "available_models",
    "base_weights_sha256",
    "build_model",
    "bytes_to_state_dict",
    "capabilities",
    "dirichlet_partition",
    "get_model_entry",
    "iid_partition",
    "initial_weights",
    "key_from_env",
    "label_histogram",
    "load_dataset",
    "load_spec",
    "lora_settings",
    "merged_weights",
    "model_problems",
    "plugin_errors",
    "prepare_dataset",
    "register_model",
    "seeded_model",
    "select_device",
    "sha256_hex",
    "state_dict_to_bytes",
    "validate_options",
    "warm_up",
    "write_parquet",
]
