"""Named arrays <-> safetensors bytes: the only format weights cross a process boundary in."""

from __future__ import annotations

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from fedbus.errors import NonRetryableError

__all__ = ["tensors_from_bytes", "tensors_to_bytes"]


def tensors_to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays to safetensors bytes (deterministic for equal input)."""
    return bytes(save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}))


def tensors_from_bytes(data: bytes, *, source: str = "artifact") -> dict[str, np.ndarray]:
    """Parse safetensors bytes; raises :class:`NonRetryableError` naming ``source`` if invalid."""
    try:
        return dict(load(data))
    except (SafetensorError, ValueError) as exc:
        raise NonRetryableError(f"{source}: not a valid safetensors file ({exc})") from exc
