"""Pick the training device: CUDA, then MPS, then CPU, falling back to CPU on failure."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch

from fedbus_executor.errors import DeviceError

__all__ = ["DeviceChoice", "DeviceProbe", "TorchDeviceProbe", "is_device_failure", "select_device"]

logger = logging.getLogger(__name__)


class DeviceProbe(Protocol):
    """What the selector asks of the hardware (a fake stands in for it in tests)."""

    def cuda_available(self) -> bool:
        """Whether CUDA is usable at all."""
        ...

    def mps_available(self) -> bool:
        """Whether Apple MPS is usable."""
        ...

    def check(self, device: torch.device) -> None:
        """Raise if a small allocation on ``device`` fails."""
        ...


class TorchDeviceProbe:
    """The real probe: asks torch, and allocates one tensor to prove the device works."""

    def cuda_available(self) -> bool:
        """Whether torch sees a CUDA device."""
        return bool(torch.cuda.is_available())

    def mps_available(self) -> bool:
        """Whether torch sees MPS."""
        return bool(torch.backends.mps.is_available())

    def check(self, device: torch.device) -> None:
        """Allocate on ``device`` (raises on driver or init errors)."""
        torch.zeros(1, device=device).add_(1)


@dataclass(frozen=True)
class DeviceChoice:
    """The device to use, what was asked for, and why it differs if it does."""

    device: torch.device
    requested: str
    fallback_reason: str | None = None


def select_device(requested: str = "auto", *, probe: DeviceProbe | None = None) -> DeviceChoice:
    """Resolve ``auto`` / ``cuda[:n]`` / ``mps`` / ``cpu`` to a working device.

    Raises
    ------
    DeviceError
        When ``requested`` is not a device name torch understands.
    """
    probe = probe or TorchDeviceProbe()
    if requested == "auto":
        if probe.cuda_available():
            return _try(torch.device("cuda"), requested, probe)
        if probe.mps_available():
            return _try(torch.device("mps"), requested, probe)
        return DeviceChoice(torch.device("cpu"), requested)
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {requested!r}: {exc}") from exc
    if device.type == "cpu":
        return DeviceChoice(device, requested)
    available = probe.cuda_available() if device.type == "cuda" else probe.mps_available()
    if not available:
        return _fallback(requested, f"{device.type} is not available")
    return _try(device, requested, probe)


def _try(device: torch.device, requested: str, probe: DeviceProbe) -> DeviceChoice:
    try:
        probe.check(device)
    except (RuntimeError, AssertionError) as exc:  # torch raises AssertionError without CUDA
        return _fallback(requested, f"{device} failed to initialise: {exc}")
    return DeviceChoice(device, requested)


def _fallback(requested: str, reason: str) -> DeviceChoice:
    logger.warning("device %s unusable (%s); falling back to cpu", requested, reason)
    return DeviceChoice(torch.device("cpu"), requested, reason)


def is_device_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator failure (OOM, CUDA/MPS runtime error)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    markers = ("cuda", "mps", "out of memory", "nvidia", "driver", "device-side")
    return isinstance(exc, RuntimeError) and any(k in text for k in markers)
