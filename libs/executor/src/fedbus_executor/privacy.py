"""DP-SGD through Opacus: model checks, noise calibration, and the engine around it."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch import nn

from fedbus_executor.errors import PrivacyConfigError
from fedbus_executor.task import DPSettings, PrivacyReport

__all__ = ["DPPlan", "make_dp_compatible", "plan_noise", "privacy_report", "secure_generator"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPPlan:
    """Noise multiplier and sampling planned for a run."""

    noise_multiplier: float
    sample_rate: float
    steps: int


def secure_generator() -> torch.Generator:
    """A CPU generator for DP-SGD's noise and Poisson sampling, seeded from ``secrets``.

    Never from the task's seed: that seed follows from the job's (so that a rerun trains
    on the same data order), and anyone who knows it could re-draw the noise and subtract
    it. Opacus's ``secure_mode`` would draw every value from a CSPRNG, but needs
    torchcsprng, which is not built for current torch releases; here the Mersenne Twister
    gets 64 bits from the OS's CSPRNG for every run.
    """
    return torch.Generator().manual_seed(secrets.randbits(64))


def make_dp_compatible(model: nn.Module, *, fix: bool) -> nn.Module:
    """Return ``model`` if Opacus can train it, a fixed copy if ``fix``, else refuse.

    Raises
    ------
    PrivacyConfigError
        With Opacus's reasons, when the model is incompatible and ``fix`` is false,
        or when fixing did not help.
    """
    errors = ModuleValidator.validate(model, strict=False)
    if not errors:
        return model
    reasons = "; ".join(str(e) for e in errors)
    if not fix:
        raise PrivacyConfigError(f"model cannot be trained with DP-SGD: {reasons}")
    logger.warning("replacing DP-incompatible layers (%s)", reasons)
    fixed: nn.Module = ModuleValidator.fix(model)
    remaining = ModuleValidator.validate(fixed, strict=False)
    if remaining:
        raise PrivacyConfigError(
            "model cannot be trained with DP-SGD even after fixing: "
            + "; ".join(str(e) for e in remaining)
        )
    return fixed


def plan_noise(settings: DPSettings, *, sample_rate: float, steps: int) -> DPPlan:
    """Turn settings into a noise multiplier (from a target epsilon when one is given)."""
    if settings.noise_multiplier is not None:
        return DPPlan(settings.noise_multiplier, sample_rate, steps)
    if settings.target_epsilon is None:
        raise PrivacyConfigError("dp needs a noise_multiplier or a target_epsilon")
    try:
        sigma = get_noise_multiplier(
            target_epsilon=settings.target_epsilon,
            target_delta=settings.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            epsilon_tolerance=0.01,
        )
    except ValueError as exc:
        raise PrivacyConfigError(f"cannot reach epsilon {settings.target_epsilon}: {exc}") from exc
    logger.info(
        "noise multiplier %.4f for epsilon %s over %s steps at q=%.5f",
        sigma,
        settings.target_epsilon,
        steps,
        sample_rate,
    )
    return DPPlan(float(sigma), sample_rate, steps)


def privacy_report(engine: PrivacyEngine, settings: DPSettings, plan: DPPlan) -> PrivacyReport:
    """The DP facts of a run, with epsilon from Opacus's RDP accountant."""
    steps = sum(int(s) for _, _, s in engine.accountant.history)
    epsilon = float(engine.accountant.get_epsilon(delta=settings.delta)) if steps else 0.0
    return PrivacyReport(
        noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate,
        steps=steps,
        epsilon=epsilon,
        delta=settings.delta,
        max_grad_norm=settings.max_grad_norm,
    )
