"""Weights cross process boundaries as named tensors in safetensors, never pickle."""

from __future__ import annotations

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fedbus.storage import sha256_hex as _storage_sha256_hex
from fedbus_executor.errors import ModelError

__all__ = ["StateDict", "bytes_to_state_dict", "sha256_hex", "state_dict_to_bytes"]

StateDict = dict[str, torch.Tensor]


def state_dict_to_bytes(state: StateDict, *, metadata: dict[str, str] | None = None) -> bytes:
    """Serialize named tensors to safetensors bytes (CPU, contiguous copies)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return bytes(st_save(tensors, metadata=metadata))


def bytes_to_state_dict(data: bytes, *, expected_sha256: str | None = None) -> StateDict:
    """Parse safetensors bytes, first checking their SHA-256 when one is given.

    Raises
    ------
    ModelError
        When the hash differs or the bytes are not safetensors.
    """
    if expected_sha256 is not None and sha256_hex(data) != expected_sha256:
        raise ModelError(
            f"weights hash mismatch: expected {expected_sha256}, got {sha256_hex(data)}"
        )
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"weights are not valid safetensors: {exc}") from exc


# One definition of the artifact hash, shared with fedbus.storage.
sha256_hex = _storage_sha256_hex
