"""Predictions from registered model versions: input checks, micro-batching, the model cache."""

from fedbus_gateway.predict.batcher import MicroBatcher
from fedbus_gateway.predict.inputs import InputError, to_batch
from fedbus_gateway.predict.serving import (
    KNOWN_DATASETS,
    DatasetFacts,
    PredictError,
    Predictor,
    ServedVersion,
)

__all__ = [
    "KNOWN_DATASETS",
    "DatasetFacts",
    "InputError",
    "MicroBatcher",
    "PredictError",
    "Predictor",
    "ServedVersion",
    "to_batch",
]
