"""Central DP (DP-FedAvg) for a round: the wrapper strategy, the fail-closed check, the record.

docs/privacy.md, step 3: the job's strategy is wrapped with
:class:`~fedbus.aggregation.DPFedAvgFixedClipping` (adaptive clipping with
``strategy.options.adaptive_clipping = 1``), noise ``noise_multiplier * clipping_norm`` on the
sum of the clipped deltas, divided by the number of *selected* clients. A round aggregates
only when every selected client's update was accepted; otherwise it is aborted, never
rescaled. The noise comes from the operating system's CSPRNG, fresh every round
(:mod:`fedbus.aggregation.noise`): it is never seeded from the job's seed, which the
submitter and every reader of ``round.started`` know and could subtract the noise with.
"""

from __future__ import annotations

from fedbus.aggregation import DPFedAvgAdaptiveClipping, DPFedAvgFixedClipping
from fedbus.aggregation import Strategy as AggregationStrategy
from fedbus.events import DpUsage, PrivacyMode, RoundStarted
from fedbus.jobspec import DP_OPTIONS
from fedbus_aggregator.rounds import RoundState

__all__ = [
    "DP_OPTIONS",
    "central_dp_shortfall",
    "dp_usage",
    "is_central_dp",
    "wrap_for_central_dp",
]

ADAPTIVE_OPTION = "adaptive_clipping"


def is_central_dp(started: RoundStarted) -> bool:
    """True when the round's job asks for central DP."""
    return started.privacy.mode is PrivacyMode.CENTRAL_DP


def central_dp_shortfall(state: RoundState) -> str | None:
    """Why a central-DP round must not aggregate now, or None when it may (or is not DP).

    The noise is calibrated, and the round accounted, for every selected client: one
    missing or rejected update aborts the round.
    """
    started = state.started
    if not is_central_dp(started):
        return None
    privacy = started.privacy
    if privacy.noise_multiplier is None or privacy.clipping_norm is None:
        return (
            f"round {state.round}: central_dp needs privacy.noise_multiplier and clipping_norm "
            "in round.started; not aggregated"
        )
    accepted = {u.client_id for u in state.accepted()}
    missing = sorted(set(state.selected) - accepted)
    if missing:
        return (
            f"round {state.round}: central DP aborted: noise is calibrated for all "
            f"{len(state.selected)} selected clients, but no accepted update from {missing}"
        )
    return None


def wrap_for_central_dp(
    strategy: AggregationStrategy, started: RoundStarted
) -> DPFedAvgFixedClipping:
    """The job's strategy inside the DP-FedAvg wrapper the round asks for.

    The caller has checked :func:`central_dp_shortfall` (noise and clipping norm are set).
    The wrappers draw their noise from the OS's CSPRNG (no ``rng`` passed).
    """
    privacy = started.privacy
    z, clip = privacy.noise_multiplier or 0.0, privacy.clipping_norm or 0.0
    expected = len(started.selected_clients)
    options = started.strategy.options
    if options.get(ADAPTIVE_OPTION) == 1:
        # Andrew et al. suggest sigma_b = m / 20 for hundreds of clients; with few it would
        # leave no noise for the updates (2 sigma_b <= z), so it is at least z.
        stddev = options.get("clipped_count_stddev", max(expected / 20, z))
        return DPFedAvgAdaptiveClipping(
            strategy, noise_multiplier=z, initial_clipping_norm=clip, expected_clients=expected,
            clipped_count_stddev=stddev,
            target_unclipped_quantile=options.get("target_unclipped_quantile", 0.5),
            clip_learning_rate=options.get("clip_learning_rate", 0.2),
        )  # fmt: skip
    return DPFedAvgFixedClipping(
        strategy, noise_multiplier=z, clipping_norm=clip, expected_clients=expected
    )  # fmt: skip


def dp_usage(started: RoundStarted, *, clipping_norm: float) -> DpUsage:
    """``round.completed.dp``: one Gaussian release at client sampling rate 1."""
    return DpUsage(
        noise_multiplier=started.privacy.noise_multiplier or 0.0, sample_rate=1.0, steps=1,
        clipping_norm=clipping_norm,
    )  # fmt: skip
