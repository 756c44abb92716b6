"""Aggregation strategies: pure functions and small classes over named numpy arrays.

A model (or a delta) is a mapping from tensor name to numpy array, the same named
tensors trainers ship in safetensors. Strategies consume client deltas
(``local - global``) and produce the next global model; see :class:`Strategy`.
"""

from fedbus.aggregation.clipping import NoisyMean, clip_update, noisy_clipped_mean
from fedbus.aggregation.dp_adaptive import (
    DPFedAvgAdaptiveClipping,
    adapt_clipping_norm,
    update_noise_multiplier,
)
from fedbus.aggregation.dp_fixed import DPFedAvgFixedClipping
from fedbus.aggregation.errors import (
    AggregationError,
    EmptyRoundError,
    IncompatibleUpdateError,
    RoundAbortedError,
)
from fedbus.aggregation.fedadagrad import FedAdagrad
from fedbus.aggregation.fedadam import FedAdam
from fedbus.aggregation.fedavg import FedAvg, FedAvgAccumulator
from fedbus.aggregation.fedavgm import FedAvgM
from fedbus.aggregation.fedyogi import FedYogi
from fedbus.aggregation.fixed_point import FixedPointSum
from fedbus.aggregation.helpers import apply_delta, l2_norm
from fedbus.aggregation.krum import Krum, MultiKrum, krum_scores
from fedbus.aggregation.median import CoordinateMedian
from fedbus.aggregation.noise import secure_standard_normal
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.trimmed_mean import TrimmedMean
from fedbus.aggregation.updates import ClientUpdate, FloatArray, Model, NamedArrays
from fedbus.aggregation.validation import ValidationResult, validate_update

__all__ = [
    "AggregationError",
    "ClientUpdate",
    "CoordinateMedian",
    "DPFedAvgAdaptiveClipping",
    "DPFedAvgFixedClipping",
    "EmptyRoundError",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgAccumulator",
    "FedAvgM",
    "FedYogi",
    "FixedPointSum",
    "FloatArray",
    "IncompatibleUpdateError",
    "Krum",
    "Model",
    "MultiKrum",
    "NamedArrays",
    "NoisyMean",
    "RoundAbortedError",
    "Strategy",
    "TrimmedMean",
    "ValidationResult",
    "adapt_clipping_norm",
    "apply_delta",
    "clip_update",
    "krum_scores",
    "l2_norm",
    "noisy_clipped_mean",
    "secure_standard_normal",
    "update_noise_multiplier",
    "validate_update",
]
