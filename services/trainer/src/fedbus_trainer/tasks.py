"""Pure mapping from a ``round.assigned`` event to the executor's task, and back to facts.

No I/O: what the round asks for (epochs, learning rate, FedProx, DP) becomes a
:class:`~fedbus_executor.TrainingTask`; what the run produced becomes the update's
metrics and :class:`~fedbus.events.DpUsage`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import torch

from fedbus.aggregation import clip_update
from fedbus.events import DpUsage, PrivacyMode, RoundAssigned, Strategy
from fedbus_executor import (
    DataRef,
    DPSettings,
    PrivacyReport,
    TrainingMetrics,
    TrainingTask,
    lora_settings,
)
from fedbus_executor import ModelRef as ExecutorModelRef

__all__ = [
    "TaskConfigError",
    "central_dp_norm",
    "central_dp_usage",
    "client_seed",
    "clip_for_central_dp",
    "delta_arrays",
    "local_dp_usage",
    "lora_settings",
    "training_task",
    "update_metrics",
]

Arrays = dict[str, npt.NDArray[np.float32]]


class TaskConfigError(ValueError):
    """The round asks for something this trainer cannot do (named in the message)."""


def client_seed(*, round_seed: int, round_number: int, client_id: str) -> int:
    """A 63-bit seed per (seed, round, client): data order and dropout of that client's run.

    Not derived from the job id: a job submitted again with the same seed gets a new id,
    and must train on the same data order to give the same model bytes. Two clients of a
    round still differ. DP noise never comes from it (the executor draws DP-SGD's noise
    and sampling from the OS's CSPRNG).
    """
    text = f"{round_seed}:{round_number}:{client_id}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def training_task(
    event: RoundAssigned,
    *,
    client_id: str,
    data: DataRef,
    initial_weights: bytes,
    device: str = "auto",
) -> TrainingTask:
    """The executor task for ``event`` on this client's ``data`` from ``initial_weights``.

    Raises
    ------
    TaskConfigError
        When FedProx has no ``proximal_mu`` or local DP lacks its parameters.
    """
    return TrainingTask(
        model=ExecutorModelRef(name=event.model, kwargs=dict(event.model_options)),
        data=data,
        epochs=event.training.local_epochs,
        batch_size=event.training.batch_size,
        learning_rate=event.training.learning_rate,
        optimizer=event.training.optimizer.value,
        momentum=event.training.momentum,
        nesterov=event.training.nesterov,
        weight_decay=event.training.weight_decay,
        lr_schedule=event.training.lr_schedule.value,
        lr_step_epochs=event.training.lr_step_epochs,
        lr_gamma=event.training.lr_gamma,
        lr_min=event.training.lr_min,
        seed=client_seed(
            round_seed=event.seed,
            round_number=event.round,
            client_id=client_id,
        ),
        device=device,
        fedprox_mu=_fedprox_mu(event),
        dp=_local_dp(event),
        lora=lora_settings(event.lora),
        initial_weights=initial_weights,
        progress_every=1,
    )


def _fedprox_mu(event: RoundAssigned) -> float | None:
    if event.strategy.name is not Strategy.FEDPROX:
        return None
    mu = event.strategy.options.get("proximal_mu")
    if mu is None or not math.isfinite(mu) or mu < 0:
        raise TaskConfigError("fedprox needs strategy.options.proximal_mu >= 0")
    return mu


def _local_dp(event: RoundAssigned) -> DPSettings | None:
    privacy = event.privacy
    if privacy.mode is not PrivacyMode.LOCAL_DP:
        return None
    if privacy.clipping_norm is None or not privacy.clipping_norm > 0:
        raise TaskConfigError("local_dp needs privacy.clipping_norm > 0")
    if privacy.noise_multiplier is not None:
        return DPSettings(
            noise_multiplier=privacy.noise_multiplier, max_grad_norm=privacy.clipping_norm
        )
    if privacy.target_epsilon is None or privacy.delta is None:
        raise TaskConfigError("local_dp needs privacy.noise_multiplier or target_epsilon and delta")
    return DPSettings(
        target_epsilon=privacy.target_epsilon,
        delta=privacy.delta,
        max_grad_norm=privacy.clipping_norm,
    )


def central_dp_norm(event: RoundAssigned) -> float | None:
    """The L2 bound for the whole update under central DP, else None.

    Raises
    ------
    TaskConfigError
        When central DP has no positive ``clipping_norm``.
    """
    privacy = event.privacy
    if privacy.mode is not PrivacyMode.CENTRAL_DP:
        return None
    if privacy.clipping_norm is None or not privacy.clipping_norm > 0:
        raise TaskConfigError("central_dp needs privacy.clipping_norm > 0")
    return privacy.clipping_norm


def delta_arrays(delta: Mapping[str, torch.Tensor]) -> Arrays:
    """The executor's delta (local - start) as float32 arrays, as the update is sent."""
    return {
        name: np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
        for name, t in delta.items()
    }


def clip_for_central_dp(delta: Arrays, *, clipping_norm: float) -> tuple[Arrays, float]:
    """Scale the whole update to L2 norm <= ``clipping_norm``; returns it and the prior norm."""
    clipped, norm = clip_update(delta, clipping_norm=clipping_norm)
    return {k: np.asarray(v, dtype=np.float32) for k, v in clipped.items()}, norm


def local_dp_usage(report: PrivacyReport) -> DpUsage:
    """What DP-SGD actually used, for the privacy accountant."""
    return DpUsage(
        noise_multiplier=report.noise_multiplier,
        sample_rate=report.sample_rate,
        steps=report.steps,
        clipping_norm=report.max_grad_norm,
    )


def central_dp_usage(clipping_norm: float) -> DpUsage:
    """Central DP on a trainer is clipping only: no noise (the aggregator adds it), one step.

    The trainer cannot know how many clients could have been sampled, so it reports the
    conservative sample rate 1; the aggregator's ``round.completed.dp`` is the
    authoritative central-DP record.
    """
    return DpUsage(noise_multiplier=0.0, sample_rate=1.0, steps=1, clipping_norm=clipping_norm)


def update_metrics(metrics: TrainingMetrics) -> dict[str, float]:
    """``loss``, ``accuracy``, ``duration_s``; non-finite values left out (JSON refuses them)."""
    values = {"loss": metrics.loss, "accuracy": metrics.accuracy, "duration_s": metrics.duration_s}
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}
