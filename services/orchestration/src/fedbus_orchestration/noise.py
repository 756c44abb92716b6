"""The noise multiplier each round of a DP job uses, and the admission check of an explicit one.

Pure functions over :mod:`fedbus.privacy` (docs/privacy.md, step 1):

- local DP: for every selected client ``c`` with ``n_c`` samples, ``q_c = batch_size / n_c``
  and ``s_c = local_epochs * ceil(n_c / batch_size)`` steps per round; the round uses
  ``max_c noise_multiplier_for(target_epsilon, delta, q_c, rounds * s_c)``, so that every
  planned round fits every client's budget;
- central DP: one Gaussian release per round at client sampling rate 1 (no amplification by
  client sampling is claimed): ``noise_multiplier_for(target_epsilon, delta, 1.0, rounds)``.

The spec's own ``noise_multiplier`` always wins.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

from fedbus.events import JobSpec, PrivacyMode
from fedbus.privacy import compute_epsilon, noise_multiplier_for

__all__ = ["first_round_epsilon", "local_dp_steps", "round_noise_multiplier"]


def local_dp_steps(*, num_samples: int, batch_size: int, local_epochs: int) -> tuple[float, int]:
    """``(sample rate, steps per round)`` of DP-SGD on ``num_samples`` records.

    A client with fewer records than a batch samples at rate 1 (one step per epoch).
    """
    n = max(1, num_samples)
    return min(1.0, batch_size / n), local_epochs * math.ceil(n / batch_size)


@functools.lru_cache(maxsize=256)
def _derived(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    # Bisection over the RDP accountant: slow enough to be worth remembering per (q, steps).
    return noise_multiplier_for(
        target_epsilon=target_epsilon, delta=delta, sample_rate=sample_rate, steps=steps
    )


def _mechanisms(
    spec: JobSpec, clients: Iterable[str], samples: Mapping[str, int]
) -> list[tuple[float, int]]:
    """``(sample rate, steps per round)`` of each client (central DP: one release)."""
    if spec.privacy.mode is PrivacyMode.CENTRAL_DP:
        return [(1.0, 1)]
    training = spec.training
    counts = {samples[c] for c in clients if samples.get(c, 0) > 0}
    if not counts:  # no sample count known: the cautious single full batch per epoch
        return [(1.0, training.local_epochs)]
    return [
        local_dp_steps(num_samples=n, batch_size=training.batch_size,
                       local_epochs=training.local_epochs)
        for n in sorted(counts)
    ]  # fmt: skip


def round_noise_multiplier(
    spec: JobSpec, *, selected: Iterable[str], samples: Mapping[str, int]
) -> float | None:
    """The noise multiplier of a round with ``selected`` clients; None without DP.

    Parameters
    ----------
    spec
        The job (``privacy.target_epsilon`` and ``delta`` validated).
    selected
        The round's clients.
    samples
        Records per client for ``spec.dataset``, from the trainers' heartbeats.

    Raises
    ------
    fedbus.privacy.UnreachableTargetError
        When no noise multiplier fits the planned rounds into the budget.
    """
    privacy = spec.privacy
    if privacy.mode is PrivacyMode.NONE:
        return None
    if privacy.noise_multiplier is not None:
        return privacy.noise_multiplier
    if privacy.target_epsilon is None or privacy.delta is None:
        return None  # validation refuses such a job; nothing to derive from
    return max(
        _derived(privacy.target_epsilon, privacy.delta, q, spec.rounds * steps)
        for q, steps in _mechanisms(spec, selected, samples)
    )


def first_round_epsilon(
    spec: JobSpec, *, clients: Iterable[str], samples: Mapping[str, int]
) -> float | None:
    """The largest epsilon one round with the spec's explicit noise multiplier spends.

    None when the spec has no DP, no explicit noise multiplier or no delta.
    """
    privacy = spec.privacy
    z = privacy.noise_multiplier
    if privacy.mode is PrivacyMode.NONE or z is None or privacy.delta is None:
        return None
    return max(
        compute_epsilon(noise_multiplier=z, sample_rate=q, steps=steps, delta=privacy.delta)
        for q, steps in _mechanisms(spec, clients, samples)
    )
